"""``llamaswitch bench | bench-status | bench-history | bench-cancel | bench-compare |
bench-import``: llama-bench runs as managed, persistent tasks.

``bench`` submits a task and follows it with a progress bar until it ends, then prints
the results (a table, or llama-bench's own output with ``--output FMT``). Options mirror
llama-bench's and :class:`~llamaswitch.BenchConfig`'s fields; options that llama-bench
sweeps take comma lists (``--threads 1,2,4 -p 16,32``): it runs every combination.

In-process, the task lives as long as the command: Ctrl-C cancels it (recorded as
``cancelled`` with the tests it finished). With ``--url`` the task runs in the service:
``--no-wait`` prints its id at once, and Ctrl-C only stops watching.

Examples::

    llamaswitch bench tiny.gguf -p 512 -n 128 -r 5
    llamaswitch bench tiny.gguf --threads 1,2 -p 16,32 -n 8 --output md
    llamaswitch bench tiny.gguf --config '{"n_prompt": 512, "n_gen": 128, "repetitions": 5}'
    llamaswitch bench llama2-7b-chat.gguf -ngl 99 -fa 1 --url http://127.0.0.1:8080 --no-wait
    llamaswitch bench-status TASK_ID --wait
    llamaswitch bench-history --model tiny.gguf --state completed --limit 10
    llamaswitch bench-compare TASK_A TASK_B
    llamaswitch bench-import results.json --format json --model tiny.gguf
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from llamaswitch._cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    positive_int,
    positive_seconds,
)
from llamaswitch._cli._interrupts import Watch, watching
from llamaswitch._cli._render import console, err_console, progress_columns, speed, text
from llamaswitch._cli._servers import load_config_json
from llamaswitch._time import format_time
from llamaswitch._vocabulary import add_options, options_to_data
from llamaswitch.bench.comparison import Comparison
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.parser import BENCH_OUTPUT_FORMATS, BenchResult
from llamaswitch.bench.task import FINAL_STATES, TASK_STATES, BenchTask

__all__ = ["bench_config_from_args", "register"]

_EXAMPLES = "examples:" + __doc__.split("Examples::", 1)[1]
# Progress is polled (the same for in-process and --url); llama-bench tests on tiny
# models last tens of milliseconds, so poll briskly.
_POLL_S = 0.1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench*`` commands."""
    bench = sub.add_parser(
        "bench",
        help="benchmark a model with llama-bench (progress bar, results table)",
        description="Run llama-bench on a model as a task and show its progress and results. "
        "Options mirror BenchConfig's fields; sweep options take comma lists. Exit code 1 "
        "when the task fails, is cancelled or interrupted.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("model", help="model file name, path in the models folder, or name")
    group = bench.add_argument_group("benchmark config (BenchConfig fields)")
    group.add_argument(
        "--config", dest="config_json", metavar="JSON|@FILE",
        help="a BenchConfig as JSON (the seed's request `config`), or @file.json; the "
        "options here override its keys",
    )  # fmt: skip
    add_options(group, BenchConfig)
    bench.add_argument(
        "--timeout", type=positive_seconds, metavar="SECONDS",
        help="time limit of the task (default: LLAMASWITCH_BENCH_TIMEOUT_S)",
    )  # fmt: skip
    bench.add_argument(
        "--no-wait", action="store_true",
        help="with --url: print the task id and return; follow it with bench-status --wait",
    )  # fmt: skip
    bench.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it goes to stderr)"
    )
    bench.add_argument("--json", action="store_true", help="print the finished task as JSON")
    add_backend_options(bench)
    bench.set_defaults(handler=guarded(_run_bench))

    status = sub.add_parser(
        "bench-status",
        help="a benchmark task: state, progress, results",
        description="Show a benchmark task: state, progress, queue position, results, error. "
        "With --wait, follow it until it ends (exit code 1 if it does not complete).",
    )
    status.add_argument("task_id", help="the task id `bench` printed")
    status.add_argument("--wait", action="store_true", help="follow the task until it ends")
    status.add_argument(
        "--output", action="store_true",
        help="print the task's verbatim llama-bench output instead of the table",
    )  # fmt: skip
    status.add_argument("--no-progress", action="store_true", help="no progress bar")
    status.add_argument("--json", action="store_true", help="print the task as JSON")
    add_backend_options(status)
    status.set_defaults(handler=guarded(_run_status))

    history = sub.add_parser(
        "bench-history",
        help="past benchmark tasks, newest first",
        description="List benchmark tasks, newest first, with filters.",
    )
    history.add_argument("--model", help="only tasks of this model")
    history.add_argument("--state", choices=TASK_STATES, help="only tasks in this state")
    history.add_argument("--since", type=_moment, help="created at or after (ISO 8601)")
    history.add_argument("--until", type=_moment, help="created before (ISO 8601)")
    history.add_argument("--limit", type=positive_int, default=50, help="at most (default 50)")
    history.add_argument("--json", action="store_true", help="print the tasks as JSON")
    add_backend_options(history)
    history.set_defaults(handler=guarded(_run_history))

    cancel = sub.add_parser(
        "bench-cancel",
        help="cancel a queued or running benchmark task",
        description="Cancel a queued or running benchmark task; it keeps the results of the "
        "tests it finished.",
    )
    cancel.add_argument("task_id")
    cancel.add_argument("--json", action="store_true", help="print the task as JSON")
    add_backend_options(cancel)
    cancel.set_defaults(handler=guarded(_run_cancel))

    delete = sub.add_parser(
        "bench-delete",
        help="delete finished benchmark tasks and their results from the history",
        description="Delete finished benchmark tasks (queued or running ones are refused: "
        "cancel them first).",
    )
    delete.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    delete.add_argument("--json", action="store_true", help="print the deleted tasks as JSON")
    add_backend_options(delete)
    delete.set_defaults(handler=guarded(_run_delete))

    prune = sub.add_parser(
        "bench-prune",
        help="delete finished benchmark tasks by age, model or state",
        description="Delete every finished task matching all the filters given (at least "
        "one). Queued and running tasks are never pruned.",
    )
    prune.add_argument("--older-than", type=_duration, metavar="AGE",
                       help="created longer ago than AGE: 90s, 30m, 12h, 30d")  # fmt: skip
    prune.add_argument("--before", type=_moment, help="created before (ISO 8601)")
    prune.add_argument("--model", help="only tasks of this model")
    prune.add_argument("--state", choices=sorted(FINAL_STATES), help="only tasks in this state")
    prune.add_argument("--json", action="store_true", help="print the deleted ids as JSON")
    add_backend_options(prune)
    prune.set_defaults(handler=guarded(_run_prune))

    compare = sub.add_parser(
        "bench-compare",
        help="several benchmark tasks' results side by side",
        description="Compare the results of several benchmark tasks, test by test.",
    )
    compare.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_backend_options(compare)
    compare.set_defaults(handler=guarded(_run_compare))

    imp = sub.add_parser(
        "bench-import",
        help="record llama-bench output made elsewhere as a completed task",
        description="Import the output of a llama-bench run made outside llamaswitch (a file, "
        "or - for stdin) into the benchmark history.",
    )
    imp.add_argument("file", help="llama-bench output file, or - to read stdin")
    imp.add_argument(
        "--format", dest="fmt", choices=BENCH_OUTPUT_FORMATS,
        help="its format (default: from the file name's suffix, else json)",
    )  # fmt: skip
    imp.add_argument("--model", help="the model it measured (md output does not name it)")
    imp.add_argument("--json", action="store_true", help="print the new task as JSON")
    add_backend_options(imp)
    imp.set_defaults(handler=guarded(_run_import))


# -- the config from the command line ----------------------------------------------------


def bench_config_from_args(args: argparse.Namespace) -> BenchConfig | None:
    """The BenchConfig the command line describes (None when it sets nothing)."""
    config: dict[str, Any] = dict(load_config_json(getattr(args, "config_json", None)))
    config.update(options_to_data(args, BenchConfig))
    return BenchConfig.from_dict(config) if config else None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(raw: str) -> float:
    """``30d``, ``12h``, ``90`` (seconds)... -> seconds."""
    found = _DURATION.fullmatch(raw.strip().lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"not an age such as 90s, 30m, 12h or 30d: {raw!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _moment(raw: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        # A date without a zone means UTC, like every time llamaswitch records.
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date or time: {raw!r} (e.g. 2025-05-01 or 2025-05-01T12:00Z)"
        ) from None


# -- bench -----------------------------------------------------------------------------


def _run_bench(args: argparse.Namespace) -> int:
    config = bench_config_from_args(args)
    remote = bool(args.url)
    if args.no_wait and not remote:
        raise usage_error(
            "--no-wait needs --url: in-process the task lives as long as this command"
        )
    with open_api(args) as api:
        task_id = api.submit_benchmark(args.model, config, timeout_s=args.timeout)
        if args.no_wait:
            if args.json:
                print_json(api.benchmark_status(task_id))
            else:
                print(task_id)
            return EXIT_OK
        try:  # from the line on: a Ctrl-C that follows it stops (or cancels) this task
            with watching():
                err_console().print(f"[dim]benchmark task {task_id}[/]", highlight=False)
                final = follow_task(api, task_id, show_progress=not args.no_progress)
        except KeyboardInterrupt:
            return _interrupted(api, task_id)
    return _finish(final, args, verbatim=bool(args.output))


def _interrupted(api: API, task_id: str) -> int:
    notes = err_console()
    if is_remote(api):
        notes.print(
            f"stopped watching; task {task_id} keeps running in the service "
            f"(`llamaswitch bench-cancel {task_id}` cancels it)"
        )
    else:
        api.cancel_benchmark(task_id)
        notes.print(f"task {task_id} cancelled")
    return EXIT_INTERRUPTED


def _current(task: BenchTask) -> str:
    progress = task.progress
    if task.state == "queued" and task.queue_position is not None:
        return f"queue position {task.queue_position}"
    return " ".join(part for part in (progress.current, progress.step) if part)


def follow_task(api: API, task_id: str, *, show_progress: bool) -> BenchTask:
    """Poll the task until it ends, with a progress bar on stderr (a terminal only).
    Ctrl-C raises ``KeyboardInterrupt`` between polls."""
    with watching() as watch:
        return _follow_task(api, task_id, watch, show_progress=show_progress)


def _follow_task(api: API, task_id: str, watch: Watch, *, show_progress: bool) -> BenchTask:
    notes = err_console()
    task = api.benchmark_status(task_id)
    if not show_progress or not notes.is_terminal:
        while not task.finished:
            watch.sleep(_POLL_S)
            task = api.benchmark_status(task_id)
        return task
    with Progress(*progress_columns(), console=notes, transient=True) as bar:
        row = bar.add_task("bench", total=None, state="", current="")
        while True:
            bar.update(row, completed=task.progress.done, total=task.progress.total,
                       state=task.state, current=escape(_current(task)))  # fmt: skip
            if task.finished:
                return task
            watch.sleep(_POLL_S)
            task = api.benchmark_status(task_id)


def _finish(task: BenchTask, args: argparse.Namespace, *, verbatim: bool) -> int:
    """Print a finished (or current) task; exit 1 unless it completed."""
    if args.json:
        print_json(task)
    elif verbatim:
        if task.output:
            sys.stdout.write(task.output if task.output.endswith("\n") else f"{task.output}\n")
    else:
        print_task(task)
    if task.finished and task.state != "completed":
        _print_failure(task)
        return EXIT_FAILED
    return EXIT_OK


def _print_failure(task: BenchTask) -> None:
    notes = err_console()
    line = f"[red]benchmark {escape(task.state)}[/]"
    if task.error:
        line += f": {escape(task.error)}"
    elif task.exit_code is not None:
        line += f" (exit code {task.exit_code})"
    notes.print(line)
    tail = task.stderr_tail
    if tail and (not task.error or tail not in task.error):
        notes.print("--- last llama-bench lines ---")
        notes.print(escape(tail.rstrip()), highlight=False)


def print_task(task: BenchTask) -> None:
    """A task's summary line and its results table."""
    out = console()
    done, total = task.progress.done, task.progress.total
    count = f"{done}/{total}" if total else str(done)
    queued = f", queue position {task.queue_position}" if task.queue_position else ""
    out.print(
        f"task [bold]{escape(task.id)}[/] {escape(task.model)}: {escape(task.state)}, "
        f"{count} tests{queued}"
    )
    if task.results:
        out.print(results_table(task.results))


# Result parameters worth a column when they differ between rows (a sweep).
_PARAM_COLUMNS = (
    ("n_threads", "threads"), ("n_gpu_layers", "ngl"), ("n_batch", "batch"),
    ("n_ubatch", "ubatch"), ("type_k", "type_k"), ("type_v", "type_v"),
    ("flash_attn", "fa"), ("split_mode", "sm"), ("main_gpu", "mg"),
    ("no_kv_offload", "nkvo"), ("use_mmap", "mmap"), ("load_mode", "lm"),
    ("embeddings", "embd"), ("cpu_mask", "cpu_mask"), ("poll", "poll"),
    ("tensor_split", "ts"), ("n_cpu_moe", "ncmoe"), ("devices", "dev"),
)  # fmt: skip


def results_table(results: Sequence[BenchResult], *, title: str | None = None) -> Table:
    """Results as llama-bench's markdown table shows them: the swept columns, test, t/s."""
    varying = [
        (key, label)
        for key, label in _PARAM_COLUMNS
        if len({repr(r.params.get(key)) for r in results}) > 1
    ]
    models = {r.model_filename for r in results}
    table = Table(title=title)
    if len(models) > 1:
        table.add_column("model", overflow="fold")
    for _key, label in varying:
        table.add_column(label, justify="right")
    table.add_column("test")
    table.add_column("t/s", justify="right")
    for result in results:
        row = []
        if len(models) > 1:
            row.append(Path(result.model_filename or "").name)
        row += [text(result.params.get(key)) for key, _label in varying]
        row.append(result.test)
        row.append(speed(result.avg_ts, result.stddev_ts))
        table.add_row(*(escape(cell) for cell in row))
    return table


# -- bench-status / history / cancel / delete / prune / compare / import ----------------------


def _run_status(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        task = api.benchmark_status(args.task_id)
        if args.wait and not task.finished:
            try:
                task = follow_task(api, args.task_id, show_progress=not args.no_progress)
            except KeyboardInterrupt:
                err_console().print("stopped watching")
                return EXIT_INTERRUPTED
    if args.wait:
        return _finish(task, args, verbatim=args.output)
    # Without --wait the command reports; a failed task is not a failure of the command.
    _finish(task, args, verbatim=args.output)
    return EXIT_OK


def _run_history(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        tasks = api.list_benchmarks(
            model=args.model, state=args.state, since=args.since, until=args.until,
            limit=args.limit,
        )  # fmt: skip
    if args.json:
        print_json(tasks)
        return EXIT_OK
    out = console()
    if not tasks:
        out.print("no benchmark tasks recorded")
        return EXIT_OK
    table = Table(title=f"{len(tasks)} benchmark task{'s' if len(tasks) != 1 else ''}")
    table.add_column("task", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for title in ("model", "state", "tests", "best t/s"):
        table.add_column(title, overflow="fold")
    for task in tasks:
        done, total = task.progress.done, task.progress.total
        table.add_row(
            escape(task.id),
            format_time(task.created_at).replace("T", " ")[:19],
            escape(task.model),
            escape(task.state),
            f"{done}/{total}" if total else str(done),
            escape(_best(task.results)),
        )
    out.print(table)
    return EXIT_OK


def _best(results: Sequence[BenchResult]) -> str:
    """The fastest result per test kind (pp, tg), e.g. ``pp512 1234.5, tg128 56.7``."""
    best: dict[str, tuple[float, str]] = {}
    for result in results:
        kind = result.test[:2]
        if result.avg_ts is not None and (kind not in best or result.avg_ts > best[kind][0]):
            best[kind] = (result.avg_ts, result.test)
    return ", ".join(f"{name} {speed:.1f}" for speed, name in best.values())


def _run_cancel(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        task = api.cancel_benchmark(args.task_id)
    if args.json:
        print_json(task)
    else:
        console().print(f"task {escape(args.task_id)}: {escape(task.state)}")
    return EXIT_OK


def _run_delete(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        deleted = [api.delete_benchmark(task_id) for task_id in args.task_ids]
    if args.json:
        print_json(deleted)
        return EXIT_OK
    for task in deleted:
        console().print(f"deleted task {escape(task.id)} ({escape(task.model)}, {task.state})")
    return EXIT_OK


def _run_prune(args: argparse.Namespace) -> int:
    before = args.before
    if args.older_than is not None:
        older = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=args.older_than)
        before = older if before is None else min(before, older)
    with open_api(args) as api:
        deleted = api.prune_benchmarks(before=before, model=args.model, state=args.state)
    if args.json:
        print_json({"deleted": deleted, "count": len(deleted)})
    else:
        console().print(f"deleted {len(deleted)} benchmark task{'s' if len(deleted) != 1 else ''}")
    return EXIT_OK


def _run_compare(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        comparison = api.compare_benchmarks(args.task_ids)
    if args.json:
        print_json(comparison)
        return EXIT_OK
    console().print(comparison_table(comparison))
    return EXIT_OK


def comparison_table(comparison: Comparison) -> Table:
    """One row per test (and swept parameters), one ``t/s`` column per task."""
    table = Table(title="benchmark comparison (t/s)")
    table.add_column("test", overflow="fold")
    for task in comparison.tasks:
        version = f" {task.binary_version}" if task.binary_version else ""
        table.add_column(escape(f"{task.id}\n{task.model}{version}"), justify="right",
                         overflow="fold")  # fmt: skip
    for row in comparison.rows:
        speeds = [
            "" if (cell := row.cells.get(task_id)) is None else speed(cell.avg_ts, cell.stddev_ts)
            for task_id in comparison.task_ids
        ]
        table.add_row(escape(row.label), *speeds)
    return table


def _run_import(args: argparse.Namespace) -> int:
    if args.file == "-":
        source = sys.stdin.read()
        fmt = args.fmt or "json"
    else:
        path = Path(args.file)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise usage_error(f"cannot read {args.file}: {exc.strerror or exc}") from None
        suffix = path.suffix.lstrip(".").lower()
        fmt = args.fmt or (suffix if suffix in BENCH_OUTPUT_FORMATS else "json")
    with open_api(args) as api:
        task = api.import_benchmark(source, fmt, model=args.model)
    if args.json:
        print_json(task)
    else:
        print_task(task)
    return EXIT_OK
