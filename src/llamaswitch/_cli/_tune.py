"""``llamaswitch tune | tune-status | tune-resume | tune-cancel | tune-save | tune-history |
tune-space``: search the llama-bench settings that serve a model fastest.

``tune`` starts a tune and follows it: a progress bar (trials measured of the budget) and
the best trials so far, refreshed as each one finishes; at the end the best settings with
their figures and spread, the Pareto front of prompt against generation speed, and the
preset written (docs/tuning.md). The space is given field by field, in llama-bench's
vocabulary (``--space threads=1,2,4 --space batch_size=256,512``), or left to the one
derived from the model, the binaries and the machine (``tune-space`` shows it).

In-process, the tune lives as long as the command: Ctrl-C cancels it (its measured
trials are kept; ``tune-resume`` goes on with them). With ``--url`` it runs in the
service: ``--detach`` prints its id at once, and Ctrl-C only stops watching.

Examples::

    llamaswitch tune tiny.gguf --space threads=1,2,4 --space batch_size=128,256 --budget 6
    llamaswitch tune tiny.gguf --objective mix --pp-weight 0.3 -p 512 -n 128
    llamaswitch tune tiny.gguf --space ngl=0,99 --space fa=0,1 --extend-default
    llamaswitch tune llama2-7b-chat.gguf --server '{"ctx_size": 8192}' --preset chat-fast
    llamaswitch tune llama2-7b-chat.gguf --url http://127.0.0.1:8080 --detach
    llamaswitch tune-status TUNE_ID --wait
    llamaswitch tune-resume TUNE_ID --budget 40
    llamaswitch tune-save TUNE_ID --trial 7 --preset tiny-other
    llamaswitch tune-history --model tiny.gguf
    llamaswitch tune-space tiny.gguf -p 256
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any, Final

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from llamaswitch._cli._api import (
    API,
    add_backend_options,
    guarded,
    is_remote,
    open_api,
    print_json,
    usage_error,
)
from llamaswitch._cli._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, positive_int
from llamaswitch._cli._interrupts import Watch, watching
from llamaswitch._cli._render import console, err_console, progress_columns, speed, text
from llamaswitch._cli._servers import json_object_arg
from llamaswitch._time import format_time
from llamaswitch._vocabulary import add_options, options_to_data, specs
from llamaswitch.bench.config import BenchConfig
from llamaswitch.tuning.mapping import TUNABLE_FIELDS
from llamaswitch.tuning.objective import Objective
from llamaswitch.tuning.options import TuneOptions
from llamaswitch.tuning.tune import Trial, Tune

__all__ = ["register", "space_from_args"]

_EXAMPLES = "examples:" + __doc__.split("Examples::", 1)[1]
# A trial lasts from tens of milliseconds (tiny models) to minutes: poll briskly.
_POLL_S: Final = 0.25
#: The best trials the live view shows.
_SHOWN: Final = 5


def _names() -> dict[str, str]:
    """Every spelling ``--space`` takes for a tunable field: its name, with hyphens too,
    and llama-bench's flags without their dashes (``ngl``, ``batch-size``)."""
    names: dict[str, str] = {}
    for field in TUNABLE_FIELDS:
        field_spec = specs(BenchConfig)[field]
        for flag in field_spec.flags:
            names[flag.lstrip("-")] = field
        names[field.replace("_", "-")] = field
        names[field] = field
    return names


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tune*`` commands."""
    tune = sub.add_parser(
        "tune",
        help="search the llama-bench settings that serve a model fastest; save a preset",
        description="Tune a model: measure llama-bench settings chosen by a sampler (each "
        "trial a benchmark task), keep the best as a preset the gateway serves. Follows the "
        "tune with a progress bar and the best trials so far. Exit code 1 when the tune "
        "fails, is cancelled or interrupted.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("model", help="model file name, path in the models folder, or name")
    space = tune.add_argument_group("the space (llama-bench's fields)")
    space.add_argument(
        "--space", action="append", default=[], metavar="FIELD=V1,V2|JSON|@FILE",
        help="values to search for a field (repeatable): threads=1,2,4, ngl=0,99, fa=0,1; one "
        "value fixes it; or the space as a JSON object. Unset: the space derived from the "
        f"model and the binaries (tune-space). Fields: {', '.join(TUNABLE_FIELDS)}",
    )  # fmt: skip
    goal = tune.add_argument_group("the objective")
    add_options(goal, Objective)
    options = tune.add_argument_group("the tune")
    add_options(options, TuneOptions)
    options.add_argument(
        "--no-save", "--no-preset", dest="no_save", action="store_true",
        help="write no preset when the tune completes (tune-save writes one later)",
    )  # fmt: skip
    options.add_argument(
        "--server", dest="server_json", metavar="JSON|@FILE",
        help="the preset's settings beyond the tuned ones, a ServerConfig as JSON (e.g. "
        '\'{"ctx_size": 8192}\'); the memory budgets are checked with them',
    )  # fmt: skip
    _follow_options(tune)
    add_backend_options(tune)
    tune.set_defaults(handler=guarded(_run_tune))

    status = sub.add_parser(
        "tune-status",
        help="a tune: state, progress, trials, the best one, the Pareto front",
        description="Show a tune: its state, progress, trials, best settings, Pareto front "
        "and preset. With --wait, follow it until it stops (exit code 1 if it does not "
        "complete).",
    )
    status.add_argument("tune_id", help="the tune id `tune` printed")
    status.add_argument("--wait", action="store_true", help="follow the tune until it stops")
    status.add_argument("--no-progress", action="store_true", help="no live view")
    status.add_argument("--json", action="store_true", help="print the tune as JSON")
    add_backend_options(status)
    status.set_defaults(handler=guarded(_run_status))

    resume = sub.add_parser(
        "tune-resume",
        help="go on with a stopped tune (or give it more trials)",
        description="Resume a tune that was cancelled, interrupted (its process ended) or "
        "failed, keeping its measured trials; --budget raises its total number of trials "
        "(also of a completed one). Follows it like `tune`.",
    )
    resume.add_argument("tune_id")
    resume.add_argument("--budget", type=positive_int, help="its new total number of trials")
    _follow_options(resume)
    add_backend_options(resume)
    resume.set_defaults(handler=guarded(_run_resume))

    cancel = sub.add_parser(
        "tune-cancel",
        help="cancel a running tune (its measured trials are kept)",
        description="Cancel a running tune and its running trial; a stopped one is shown as it is.",
    )
    cancel.add_argument("tune_id")
    cancel.add_argument("--json", action="store_true", help="print the tune as JSON")
    add_backend_options(cancel)
    cancel.set_defaults(handler=guarded(_run_cancel))

    save = sub.add_parser(
        "tune-save",
        help="write a trial of a tune (default: the best) as a preset",
        description="Write a completed trial of a tune as a preset now; the gateway serves "
        "it at once.",
    )
    save.add_argument("tune_id")
    save.add_argument("--trial", type=int, metavar="N", help="the trial (default: the best)")
    save.add_argument("--preset", metavar="ID", help="the preset's id (default: the tune's)")
    save.add_argument("--json", action="store_true", help="print the tune as JSON")
    add_backend_options(save)
    save.set_defaults(handler=guarded(_run_save))

    history = sub.add_parser(
        "tune-history",
        help="past tunes, newest first",
        description="List tunes, newest first.",
    )
    history.add_argument("--model", help="only tunes of this model")
    history.add_argument("--limit", type=positive_int, default=50, help="at most (default 50)")
    history.add_argument("--json", action="store_true", help="print the tunes as JSON")
    add_backend_options(history)
    history.set_defaults(handler=guarded(_run_history))

    derived = sub.add_parser(
        "tune-space",
        help="the space a tune of a model searches by default",
        description="Show the space derived from the model, the binaries and the machine: "
        "what `tune` searches without --space.",
    )
    derived.add_argument("model")
    derived.add_argument(
        "-p", "--n-prompt", dest="n_prompt", type=positive_int,
        help="the objective's prompt size (batch sizes stop there; default 512)",
    )  # fmt: skip
    derived.add_argument("--json", action="store_true", help="print the space as JSON")
    add_backend_options(derived)
    derived.set_defaults(handler=guarded(_run_space))


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true",
        help="with --url: print the tune id and return; follow it with tune-status --wait",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no live view (stderr)")
    parser.add_argument("--json", action="store_true", help="print the stopped tune as JSON")


# -- the request from the command line -----------------------------------------------------


def space_from_args(items: Sequence[str]) -> dict[str, Any] | None:
    """The space ``--space`` options describe (None: none given). Values are read as
    ``llamaswitch bench`` reads the same field's comma list; the library judges them."""
    if not items:
        return None
    names = _names()
    fields = specs(BenchConfig)
    space: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith(("{", "@")):
            space.update(json_object_arg("--space", item.strip()))
            continue
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise usage_error(f"--space {item!r}: give FIELD=V1,V2 (e.g. threads=1,2,4)")
        field = names.get(name.lstrip("-"), name)
        field_spec = fields.get(field)
        if field_spec is None:  # the library names it, with the fields it takes
            space[field] = values.split(",")
            continue
        given: Any = values if field_spec.style == "list" else values.split(",")
        space[field] = options_to_data(argparse.Namespace(**{field: given}), BenchConfig)[field]
    return space


def _tune_request(args: argparse.Namespace) -> dict[str, Any]:
    objective = options_to_data(args, Objective)
    options = options_to_data(args, TuneOptions)
    if args.no_save:
        options["save_preset"] = False
    server = json_object_arg("--server", args.server_json) if args.server_json else None
    return {
        "space": space_from_args(args.space),
        "objective": objective or None,
        "server": server,
        **options,
    }


# -- tune and tune-resume --------------------------------------------------------------------


def _check_detach(args: argparse.Namespace) -> None:
    if args.detach and not args.url:
        raise usage_error("--detach needs --url: in-process the tune lives as long as this command")


def _run_tune(args: argparse.Namespace) -> int:
    _check_detach(args)
    request = _tune_request(args)
    with open_api(args) as api:
        tune = api.tune(args.model, **request)
        return _attached(api, tune, args)


def _run_resume(args: argparse.Namespace) -> int:
    _check_detach(args)
    with open_api(args) as api:
        tune = api.resume_tune(args.tune_id, budget=args.budget)
        return _attached(api, tune, args)


def _attached(api: API, tune: Tune, args: argparse.Namespace) -> int:
    if args.detach:
        if args.json:
            print_json(tune)
        else:
            print(tune.id)
        return EXIT_OK
    try:  # from the line on: a Ctrl-C that follows it stops (or cancels) this tune
        with watching():
            err_console().print(f"[dim]tune {tune.id}[/]", highlight=False)
            final = follow_tune(api, tune.id, show_progress=not args.no_progress)
    except KeyboardInterrupt:
        return _interrupted(api, tune.id)
    return _finish(final, args)


def _interrupted(api: API, tune_id: str) -> int:
    notes = err_console()
    if is_remote(api):
        notes.print(
            f"stopped watching; tune {tune_id} keeps running in the service "
            f"(`llamaswitch tune-cancel {tune_id}` cancels it)"
        )
    else:
        api.cancel_tune(tune_id)
        notes.print(
            f"tune {tune_id} cancelled; its measured trials are kept "
            f"(`llamaswitch tune-resume {tune_id}` goes on)"
        )
    return EXIT_INTERRUPTED


def follow_tune(api: API, tune_id: str, *, show_progress: bool) -> Tune:
    """Poll the tune until it stops: a live view on a terminal (stderr), else one line
    per finished trial. Ctrl-C raises ``KeyboardInterrupt`` between polls."""
    with watching() as watch:
        return _follow_tune(api, tune_id, watch, show_progress=show_progress)


def _follow_tune(api: API, tune_id: str, watch: Watch, *, show_progress: bool) -> Tune:
    notes = err_console()
    tune = api.tune_status(tune_id)
    if not show_progress or not notes.is_terminal:
        told: set[int] = set()
        while True:
            for trial in tune.trials:
                if trial.state != "running" and trial.number not in told:
                    told.add(trial.number)
                    notes.print(escape(_trial_line(tune, trial)), highlight=False, soft_wrap=True)
            if tune.finished:
                return tune
            watch.sleep(_POLL_S)
            tune = api.tune_status(tune_id)
    bar = Progress(*progress_columns(), console=notes)
    row = bar.add_task("tune", total=None, state="", current="")
    with Live(console=notes, transient=True, refresh_per_second=4) as live:
        while True:
            bar.update(row, completed=tune.progress.done, total=_total(tune),
                       state=tune.state, current=escape(_current(tune)))  # fmt: skip
            live.update(Group(bar, trials_table(tune, best_only=True)))
            if tune.finished:
                return tune
            watch.sleep(_POLL_S)
            tune = api.tune_status(tune_id)


def _total(tune: Tune) -> int:
    """Trials it will measure: its budget, or every point that can run when fewer."""
    feasible = tune.progress.feasible
    return tune.progress.budget if feasible is None else min(tune.progress.budget, feasible)


def _current(tune: Tune) -> str:
    number = tune.progress.current_trial
    if number is None:
        return ""
    trial = next((t for t in tune.trials if t.number == number), None)
    return f"trial {number}: {_params(trial.params)}" if trial is not None else f"trial {number}"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={text(value)}" for name, value in params.items())


def _trial_line(tune: Tune, trial: Trial) -> str:
    head = f"trial {trial.number} {trial.state}: {_params(trial.params)}"
    if trial.state != "completed":
        return f"{head}: {trial.reason}" if trial.reason else head
    goal = tune.objective
    return (
        f"{head}: {goal.pp_test} {speed(trial.pp_ts, trial.pp_stddev)} t/s, "
        f"{goal.tg_test} {speed(trial.tg_ts, trial.tg_stddev)} t/s, "
        f"score {speed(trial.score, trial.score_error)}"
    )


def _dimensions(tune: Tune, trials: Sequence[Trial]) -> list[str]:
    searched = [name for name, values in tune.space.items() if isinstance(values, list)]
    return searched or sorted({name for t in trials for name in t.params})


def trials_table(
    tune: Tune,
    *,
    best_only: bool = False,
    numbers: Sequence[int] | None = None,
    title: str | None = None,
) -> Table:
    """Trials with their settings and figures: the best few (``best_only``), the ones
    numbered, or all of them."""
    trials = list(tune.trials)
    if best_only:
        trials = sorted((t for t in trials if t.state == "completed"),
                        key=lambda t: -(t.score or 0.0))[:_SHOWN]  # fmt: skip
        title = title or f"best trials of {tune.progress.done} measured"
    elif numbers is not None:
        trials = [t for t in trials if t.number in numbers]
    dimensions = _dimensions(tune, tune.trials)
    goal = tune.objective
    table = Table(title=title)
    table.add_column("#", justify="right")
    for name in dimensions:
        table.add_column(escape(name), justify="right")
    table.add_column(escape(f"{goal.pp_test} t/s"), justify="right")
    table.add_column(escape(f"{goal.tg_test} t/s"), justify="right")
    table.add_column("score", justify="right")
    if not best_only and numbers is None:
        table.add_column("state")
    best = None if tune.best is None else tune.best.number
    for trial in trials:
        mark = "*" if trial.number == best else ""
        cells = [f"{trial.number}{mark}"]
        cells += [text(trial.params.get(name)) for name in dimensions]
        cells += [speed(trial.pp_ts, trial.pp_stddev), speed(trial.tg_ts, trial.tg_stddev),
                  speed(trial.score, trial.score_error)]  # fmt: skip
        if not best_only and numbers is None:
            cells.append(trial.state if trial.reason is None else f"{trial.state}: {trial.reason}")
        table.add_row(*(escape(cell) for cell in cells))
    return table


def _finish(tune: Tune, args: argparse.Namespace) -> int:
    """Print a stopped tune; exit 1 unless it completed."""
    if args.json:
        print_json(tune)
    else:
        print_tune(tune)
    if tune.finished and tune.state != "completed":
        line = f"[red]tune {escape(tune.state)}[/]"
        if tune.error:
            line += f": {escape(tune.error)}"
        line += f" (`llamaswitch tune-resume {escape(tune.id)}` goes on)"
        err_console().print(line)
        return EXIT_FAILED
    return EXIT_OK


def print_tune(tune: Tune, *, all_trials: bool = False) -> None:
    """A tune's summary: its state and progress, the best settings with their figures,
    the Pareto front, the preset."""
    # Lines unbroken (a path, a figure); tables fit the width.
    out = Console(highlight=False, soft_wrap=True)
    progress = tune.progress
    out.print(
        f"tune [bold]{escape(tune.id)}[/] {escape(tune.model)}: {escape(tune.state)}, "
        f"{progress.done}/{progress.budget} trials ({progress.failed} failed, "
        f"{progress.pruned} pruned), objective {escape(tune.objective.label)}"
    )
    if all_trials and tune.trials:
        out.print(trials_table(tune, title="trials (* the best)"))
    best = tune.best
    if best is None:
        out.print("no trial measured yet" if tune.state == "running" else "no trial completed")
    else:
        goal = tune.objective
        out.print(f"best: trial {best.number}: [bold]{escape(_params(best.params))}[/]")
        out.print(
            f"  {escape(goal.pp_test)} {speed(best.pp_ts, best.pp_stddev)} t/s, "
            f"{escape(goal.tg_test)} {speed(best.tg_ts, best.tg_stddev)} t/s, "
            f"score {speed(best.score, best.score_error)} ({best.repetitions} runs each)"
        )
        if tune.pareto:
            front = "Pareto front (prompt against generation speed)"
            out.print(trials_table(tune, numbers=tune.pareto, title=front))
    preset = tune.preset
    if preset is not None and preset.written_at is not None:
        out.print(
            f"preset [bold]{escape(preset.id)}[/] (trial {preset.trial}) written to "
            f"{escape(preset.path)}: clients can name it as a model"
        )
        if preset.error:
            out.print(f"[yellow]the gateway did not load it: {escape(preset.error)}[/]")
    elif preset is not None:
        why = escape(preset.error or "")
        out.print(f"[yellow]preset {escape(preset.id)} not written: {why}[/]")
    elif tune.state == "completed" and not tune.options.save_preset:
        out.print(f"no preset written (`llamaswitch tune-save {escape(tune.id)}` writes one)")


# -- tune-status / cancel / save / history / space ----------------------------------------------


def _run_status(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        tune = api.tune_status(args.tune_id)
        if args.wait and not tune.finished:
            try:
                tune = follow_tune(api, args.tune_id, show_progress=not args.no_progress)
            except KeyboardInterrupt:
                err_console().print("stopped watching")
                return EXIT_INTERRUPTED
    if args.json:
        print_json(tune)
    else:
        print_tune(tune, all_trials=True)
    if args.wait and tune.state != "completed":
        return EXIT_FAILED
    return EXIT_OK


def _run_cancel(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        before = api.tune_status(args.tune_id)
        tune = api.cancel_tune(args.tune_id)
    if args.json:
        print_json(tune)
    elif before.finished or tune.state != "cancelled":
        console().print(f"tune {escape(tune.id)}: already {escape(tune.state)}")
    else:
        kept = tune.progress.completed
        console().print(f"tune {escape(tune.id)}: cancelled ({kept} trials measured, kept)")
    return EXIT_OK


def _run_save(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        tune = api.save_tune_preset(args.tune_id, trial=args.trial, preset=args.preset)
    if args.json:
        print_json(tune)
        return EXIT_OK
    preset = tune.preset
    assert preset is not None  # noqa: S101 - save_tune_preset raises when it wrote none
    console().print(
        f"preset [bold]{escape(preset.id)}[/] (trial {preset.trial}) written to "
        f"{escape(preset.path)}",
        soft_wrap=True,
    )
    if preset.error:
        err_console().print(f"[yellow]the gateway did not load it: {escape(preset.error)}[/]")
    return EXIT_OK


def _run_history(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        tunes = api.list_tunes(model=args.model, limit=args.limit)
    if args.json:
        print_json(tunes)
        return EXIT_OK
    out = console()
    if not tunes:
        out.print("no tunes recorded")
        return EXIT_OK
    table = Table(title=f"{len(tunes)} tune{'s' if len(tunes) != 1 else ''}")
    table.add_column("tune", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for title in ("model", "state", "trials", "objective", "best score", "preset"):
        table.add_column(title, overflow="fold")
    for tune in tunes:
        best = tune.best
        table.add_row(
            escape(tune.id),
            format_time(tune.created_at).replace("T", " ")[:19],
            escape(tune.model),
            escape(tune.state),
            f"{tune.progress.done}/{tune.progress.budget}",
            escape(tune.objective.label),
            "" if best is None else speed(best.score, best.score_error),
            "" if tune.preset is None else escape(tune.preset.id),
        )
    out.print(table)
    return EXIT_OK


def _run_space(args: argparse.Namespace) -> int:
    objective = None if args.n_prompt is None else Objective(n_prompt=args.n_prompt)
    with open_api(args) as api:
        space = api.tune_space(args.model, objective=objective)
    if args.json:
        print_json(space)
        return EXIT_OK
    table = Table(title=f"the space a tune of {escape(args.model)} searches by default")
    table.add_column("field")
    table.add_column("values")
    size = 1
    for name, values in space.items():
        shown = values if isinstance(values, list) else [values]
        size *= len(shown)
        table.add_row(escape(name), escape(", ".join(text(v) for v in shown)))
    out = console()
    out.print(table)
    out.print(f"{size} points")
    return EXIT_OK
