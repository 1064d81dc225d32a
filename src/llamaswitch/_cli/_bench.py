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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llamaswitch._cli._client import (
    EXIT_INTERRUPTED,
    Backend,
    CommandError,
    add_backend_options,
    guarded,
    open_backend,
    print_json,
    usage_error,
)
from llamaswitch._cli._common import EXIT_FAILED, EXIT_OK, positive_int, positive_seconds
from llamaswitch._cli._render import console, err_console, text
from llamaswitch._cli._servers import load_config_json
from llamaswitch.bench.parser import BENCH_OUTPUT_FORMATS
from llamaswitch.bench.store import FINAL_STATES, TASK_STATES

__all__ = ["bench_config_from_args", "register"]

_EXAMPLES = "examples:" + __doc__.split("Examples::", 1)[1]
# Progress is polled (the same for in-process and --url); llama-bench tests on tiny
# models last tens of milliseconds, so poll briskly.
_POLL_S = 0.1

# (field, flags, kind, help). kind: "ints"/"strs"/"mixed" = a comma list (a sweep);
# "repeat" = repeat the option for a sweep (its value may hold commas itself);
# "int"/"str" = one value; "flag" = a switch that is on when given.
_BENCH_OPTIONS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("n_prompt", ("-p", "--n-prompt"), "ints", "prompt tokens per pp test (0 skips them)"),
    ("n_gen", ("-n", "--n-gen"), "ints", "tokens generated per tg test (0 skips them)"),
    ("n_depth", ("-d", "--n-depth"), "ints", "tokens already in the KV cache per test"),
    ("pg", ("-pg", "--pg"), "repeat", "combined test PP,TG (repeat for several)"),
    ("batch_size", ("-b", "--batch-size"), "ints", "logical batch size"),
    ("ubatch_size", ("-ub", "--ubatch-size"), "ints", "physical batch size"),
    ("cache_type_k", ("-ctk", "--cache-type-k"), "strs", "K cache type (f16, q8_0, ...)"),
    ("cache_type_v", ("-ctv", "--cache-type-v"), "strs", "V cache type"),
    ("threads", ("-t", "--threads"), "ints", "CPU threads"),
    ("cpu_mask", ("-C", "--cpu-mask"), "strs", "CPU affinity mask in hex (0xff)"),
    ("cpu_strict", ("--cpu-strict",), "ints", "strict CPU placement, 0/1"),
    ("poll", ("--poll",), "ints", "busy-polling level, 0-100"),
    ("n_gpu_layers", ("-ngl", "--n-gpu-layers"), "ints", "layers offloaded to the GPU"),
    ("n_cpu_moe", ("-ncmoe", "--n-cpu-moe"), "ints", "MoE layers kept on the CPU (current)"),
    ("split_mode", ("-sm", "--split-mode"), "strs", "none, layer, row (tensor: current)"),
    ("main_gpu", ("-mg", "--main-gpu"), "ints", "main GPU index"),
    ("devices", ("-dev", "--devices"), "strs", "devices joined by '/' (current builds)"),
    ("no_kv_offload", ("-nkvo", "--no-kv-offload"), "ints", "KV cache in host memory, 0/1"),
    ("flash_attn", ("-fa", "--flash-attn"), "mixed", "flash attention: 0/1 (auto: current)"),
    ("mmap", ("-mmp", "--mmap"), "ints", "memory-map the model, 0/1"),
    ("load_mode", ("-lm", "--load-mode"), "strs", "how to load the model (current builds)"),
    ("numa", ("--numa",), "str", "NUMA strategy: distribute, isolate, numactl"),
    ("embeddings", ("-embd", "--embeddings"), "ints", "embeddings mode, 0/1"),
    ("tensor_split", ("-ts", "--tensor-split"), "repeat",
     'share per GPU, "0.5,0.5" (repeat for several)'),
    ("override_tensor", ("-ot", "--override-tensor"), "repeat",
     "PATTERN=BUFFER pairs joined by ';' (repeat for several)"),
    ("no_op_offload", ("-nopo", "--no-op-offload"), "ints", "no host op offload, 0/1 (current)"),
    ("repetitions", ("-r", "--repetitions"), "int", "runs of each test (llama-bench: 5)"),
    ("priority", ("--prio", "--priority"), "int", "process priority, 0-3"),
    ("delay", ("--delay",), "int", "seconds to pause before each test"),
    ("no_warmup", ("--no-warmup",), "flag", "skip the warm-up run (current builds)"),
    ("verbose", ("--verbose",), "flag", "llama-bench's verbose logging"),
)  # fmt: skip


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
    for field, flags, kind, help_text in _BENCH_OPTIONS:
        if kind == "flag":
            group.add_argument(*flags, dest=field, action="store_true", default=None,
                               help=help_text)  # fmt: skip
        elif kind == "repeat":
            group.add_argument(*flags, dest=field, action="append", help=help_text)
        else:
            metavar = {"ints": "N[,N...]", "strs": "X[,X...]", "mixed": "X[,X...]"}.get(kind)
            group.add_argument(*flags, dest=field, metavar=metavar, help=help_text)
    group.add_argument(
        "-o", "--output", choices=BENCH_OUTPUT_FORMATS,
        help="print llama-bench's own output in this format instead of the results table "
        "(it is stored with the task either way)",
    )  # fmt: skip
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

_INT = re.compile(r"[-+]?\d+")


def _token(raw: str, kind: str) -> Any:
    # Numbers become ints where llama-bench wants numbers; anything else stays text so
    # BenchConfig reports it with the field's name and rules.
    item = raw.strip()
    if kind in ("ints", "int", "mixed") and _INT.fullmatch(item):
        return int(item)
    return item


def bench_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The BenchConfig fields the command line sets, as a JSON-ready dict."""
    config: dict[str, Any] = dict(load_config_json(getattr(args, "config_json", None)))
    for field, _flags, kind, _help in _BENCH_OPTIONS:
        given = getattr(args, field, None)
        if given is None:
            continue
        if kind == "flag":
            config[field] = True
        elif kind == "repeat":
            config[field] = given[0] if len(given) == 1 else list(given)
        elif kind in ("int", "str"):
            config[field] = _token(given, kind)
        else:
            items = [_token(part, kind) for part in str(given).split(",")]
            config[field] = items[0] if len(items) == 1 else items
    if getattr(args, "output", None):
        config["output"] = args.output
    return config


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


# -- task data (the REST API's shapes) -------------------------------------------------


def task_id_of(task: Mapping[str, Any]) -> str:
    """The id of a task as the API returns it."""
    found = task.get("task_id") or task.get("id")
    if not isinstance(found, str) or not found:
        raise CommandError(f"the service returned a task without an id: {task!r}", EXIT_FAILED)
    return found


def _progress_of(task: Mapping[str, Any]) -> tuple[int, int | None, str]:
    """(tests done, tests expected or None, what runs now), from a task's ``progress``."""
    progress = task.get("progress")
    info: Mapping[str, Any] = progress if isinstance(progress, Mapping) else {}
    done = info.get("done")
    if not isinstance(done, int):
        results = task.get("results")
        done = len(results) if isinstance(results, list) else 0
    total = info.get("total")
    if not isinstance(total, int) or total <= 0:
        expected = task.get("expected_tests")
        total = expected if isinstance(expected, int) and expected > 0 else None
    current = " ".join(str(info[k]) for k in ("current", "step") if info.get(k))
    return done, total, current


# -- bench -----------------------------------------------------------------------------


def _run_bench(args: argparse.Namespace) -> int:
    config = bench_config_from_args(args)
    remote = bool(args.url)
    if args.no_wait and not remote:
        raise usage_error(
            "--no-wait needs --url: in-process the task lives as long as this command"
        )
    with open_backend(args) as backend:
        task = backend.submit_benchmark(args.model, config, timeout_s=args.timeout)
        task_id = task_id_of(task)
        if args.no_wait:
            if args.json:
                print_json(task)
            else:
                print(task_id)
            return EXIT_OK
        err_console().print(f"[dim]benchmark task {task_id}[/]", highlight=False)
        try:
            final = follow_task(backend, task_id, show_progress=not args.no_progress)
        except KeyboardInterrupt:
            return _interrupted(backend, task_id)
    return _finish(final, args, verbatim=bool(args.output))


def _interrupted(backend: Backend, task_id: str) -> int:
    notes = err_console()
    if backend.persistent:
        notes.print(
            f"stopped watching; task {task_id} keeps running in the service "
            f"(`llamaswitch bench-cancel {task_id}` cancels it)"
        )
    else:
        backend.cancel_benchmark(task_id)
        notes.print(f"task {task_id} cancelled")
    return EXIT_INTERRUPTED


def follow_task(backend: Backend, task_id: str, *, show_progress: bool) -> dict[str, Any]:
    """Poll the task until it ends, with a progress bar on stderr (a terminal only)."""
    notes = err_console()
    task = backend.benchmark_status(task_id)
    if not show_progress or not notes.is_terminal:
        while task.get("state") not in FINAL_STATES:
            time.sleep(_POLL_S)
            task = backend.benchmark_status(task_id)
        return task
    columns = (
        TextColumn("[bold]{task.fields[state]:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
    )
    with Progress(*columns, console=notes, transient=True) as bar:
        row = bar.add_task("bench", total=None, state="", current="")
        while True:
            done, total, current = _progress_of(task)
            state = str(task.get("state"))
            position = task.get("queue_position")
            if state == "queued" and isinstance(position, int):
                current = f"queue position {position}"
            bar.update(row, completed=done, total=total, state=state, current=escape(current))
            if state in FINAL_STATES:
                return task
            time.sleep(_POLL_S)
            task = backend.benchmark_status(task_id)


def _finish(task: Mapping[str, Any], args: argparse.Namespace, *, verbatim: bool) -> int:
    """Print a finished (or current) task; exit 1 unless it completed."""
    state = task.get("state")
    if args.json:
        print_json(task)
    elif verbatim:
        output = task.get("output")
        if output:
            sys.stdout.write(output if str(output).endswith("\n") else f"{output}\n")
    else:
        print_task(task)
    if state in FINAL_STATES and state != "completed":
        _print_failure(task)
        return EXIT_FAILED
    return EXIT_OK


def _print_failure(task: Mapping[str, Any]) -> None:
    notes = err_console()
    state = task.get("state")
    error = task.get("error")
    code = task.get("exit_code")
    line = f"[red]benchmark {escape(str(state))}[/]"
    if error:
        line += f": {escape(str(error))}"
    elif code is not None:
        line += f" (exit code {code})"
    notes.print(line)
    tail = task.get("stderr_tail")
    if tail and (not error or str(tail) not in str(error)):
        notes.print("--- last llama-bench lines ---")
        notes.print(escape(str(tail).rstrip()), highlight=False)


def print_task(task: Mapping[str, Any]) -> None:
    """A task's summary line and its results table."""
    out = console()
    done, total, _ = _progress_of(task)
    count = f"{done}/{total}" if total else str(done)
    model = task.get("model") or task.get("model_name") or ""
    out.print(
        f"task [bold]{escape(str(task_id_of(task)))}[/] {escape(str(model))}: "
        f"{escape(str(task.get('state')))}, {count} tests"
        + (f", queue position {task['queue_position']}" if task.get("queue_position") else "")
    )
    results = task.get("results")
    if isinstance(results, list) and results:
        out.print(results_table(results))


# Result parameters worth a column when they differ between rows (a sweep).
_PARAM_COLUMNS = (
    ("n_threads", "threads"), ("n_gpu_layers", "ngl"), ("n_batch", "batch"),
    ("n_ubatch", "ubatch"), ("type_k", "type_k"), ("type_v", "type_v"),
    ("flash_attn", "fa"), ("split_mode", "sm"), ("main_gpu", "mg"),
    ("no_kv_offload", "nkvo"), ("use_mmap", "mmap"), ("load_mode", "lm"),
    ("embeddings", "embd"), ("cpu_mask", "cpu_mask"), ("poll", "poll"),
    ("tensor_split", "ts"), ("n_cpu_moe", "ncmoe"), ("devices", "dev"),
)  # fmt: skip


def results_table(results: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Table:
    """Results as llama-bench's markdown table shows them: the swept columns, test, t/s."""
    params: list[Mapping[str, Any]] = []
    for result in results:
        found = result.get("params")
        params.append(found if isinstance(found, Mapping) else {})
    varying = [
        (key, label) for key, label in _PARAM_COLUMNS if len({repr(p.get(key)) for p in params}) > 1
    ]
    models = {r.get("model_filename") for r in results}
    table = Table(title=title)
    if len(models) > 1:
        table.add_column("model", overflow="fold")
    for _key, label in varying:
        table.add_column(label, justify="right")
    table.add_column("test")
    table.add_column("t/s", justify="right")
    for result, param in zip(results, params, strict=True):
        row = []
        if len(models) > 1:
            row.append(Path(str(result.get("model_filename") or "")).name)
        row += [text(param.get(key)) for key, _label in varying]
        row.append(text(result.get("test")))
        row.append(_speed(result))
        table.add_row(*(escape(cell) for cell in row))
    return table


def _speed(result: Mapping[str, Any]) -> str:
    avg, std = result.get("avg_ts"), result.get("stddev_ts")
    if not isinstance(avg, int | float):
        return ""
    return f"{avg:.2f} ± {std:.2f}" if isinstance(std, int | float) else f"{avg:.2f}"


# -- bench-status / history / cancel / compare / import ---------------------------------------


def _run_status(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        task = backend.benchmark_status(args.task_id)
        if args.wait and task.get("state") not in FINAL_STATES:
            try:
                task = follow_task(backend, args.task_id, show_progress=not args.no_progress)
            except KeyboardInterrupt:
                err_console().print("stopped watching")
                return EXIT_INTERRUPTED
    if args.wait:
        return _finish(task, args, verbatim=args.output)
    # Without --wait the command reports; a failed task is not a failure of the command.
    _finish(task, args, verbatim=args.output)
    return EXIT_OK


def _run_history(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        tasks = backend.list_benchmarks(
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
        done, total, _ = _progress_of(task)
        table.add_row(
            escape(text(task.get("id") or task.get("task_id"))),
            escape(_short_time(task.get("created_at"))),
            escape(text(task.get("model"))),
            escape(text(task.get("state"))),
            f"{done}/{total}" if total else str(done),
            escape(_best(task.get("results"))),
        )
    out.print(table)
    return EXIT_OK


def _short_time(moment: Any) -> str:
    """``2026-01-02T03:04:05.678Z`` -> ``2026-01-02 03:04:05``."""
    return text(moment).replace("T", " ")[:19]


def _best(results: Any) -> str:
    """The fastest result per test kind (pp, tg), e.g. ``pp512 1234.5, tg128 56.7``."""
    if not isinstance(results, list):
        return ""
    best: dict[str, tuple[float, str]] = {}
    for result in results:
        if not isinstance(result, Mapping):
            continue
        test, avg = str(result.get("test", "")), result.get("avg_ts")
        if not isinstance(avg, int | float):
            continue
        kind = test[:2]
        if kind not in best or avg > best[kind][0]:
            best[kind] = (float(avg), test)
    return ", ".join(f"{name} {speed:.1f}" for speed, name in best.values())


def _run_cancel(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        task = backend.cancel_benchmark(args.task_id)
    if args.json:
        print_json(task)
    else:
        console().print(f"task {escape(args.task_id)}: {escape(str(task.get('state')))}")
    return EXIT_OK


def _run_compare(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        comparison = backend.compare_benchmarks(args.task_ids)
    if args.json:
        print_json(comparison)
        return EXIT_OK
    console().print(comparison_table(comparison))
    return EXIT_OK


def comparison_table(comparison: Mapping[str, Any]) -> Table:
    """One row per test (and swept parameters), one ``t/s`` column per task."""
    tasks = [t for t in comparison.get("tasks") or [] if isinstance(t, Mapping)]
    table = Table(title="benchmark comparison (t/s)")
    table.add_column("test", overflow="fold")
    ids = [str(t.get("id") or t.get("task_id")) for t in tasks]
    for task_id, task in zip(ids, tasks, strict=True):
        version = f" {task['binary_version']}" if task.get("binary_version") else ""
        table.add_column(
            escape(f"{task_id}\n{task.get('model', '')}{version}"), justify="right", overflow="fold"
        )
    for row in comparison.get("rows") or []:
        if not isinstance(row, Mapping):
            continue
        cells = row.get("results")
        found: Mapping[str, Any] = cells if isinstance(cells, Mapping) else {}
        speeds = [
            _speed(cell) if isinstance(cell := found.get(task_id), Mapping) else ""
            for task_id in ids
        ]
        table.add_row(escape(text(row.get("label") or row.get("test"))), *speeds)
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
    with open_backend(args) as backend:
        task = backend.import_benchmark(source, fmt, model=args.model)
    if args.json:
        print_json(task)
    else:
        print_task(task)
    return EXIT_OK
