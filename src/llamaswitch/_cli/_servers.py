"""``llamaswitch switch | start | stop | status | logs``: model servers.

In-process (the default), ``switch`` and ``start`` serve in the foreground: the command
prints the server's URL and keeps it running until Ctrl-C (or SIGTERM), then stops it
and exits 0. That is what the library promises (a manager stops what it started), and
what a user running one model on a laptop expects. With ``--url`` they ask a running
``llamaswitch serve`` and return as soon as the server is ready; it keeps running there.

``stop``, ``status`` and ``logs`` are about servers that a manager runs, so they are
meant for ``--url``: in-process they only see this process's servers, which is none.

Examples::

    llamaswitch switch tiny.gguf --port 8091 --ctx-size 2048 -ngl 99 --flash-attn
    llamaswitch switch tiny.gguf --follow            # print the server's log as it runs
    export LLAMASWITCH_URL=http://127.0.0.1:8080     # a running `llamaswitch serve`
    llamaswitch switch llama2-7b-chat.gguf --threads 8 --batch-size 512
    llamaswitch start other.gguf                     # a second server, free port
    llamaswitch status --json
    llamaswitch logs --port 8091 -n 50
    llamaswitch stop tiny.gguf; llamaswitch stop --port 8091; llamaswitch stop --all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from rich.markup import escape
from rich.table import Table

from llamaswitch._cli._client import (
    Backend,
    CommandError,
    LocalBackend,
    add_backend_options,
    guarded,
    open_backend,
    print_json,
    usage_error,
)
from llamaswitch._cli._common import EXIT_FAILED, EXIT_OK, port_number, positive_int
from llamaswitch._cli._render import console, err_console, text, value
from llamaswitch._errors import LlamaSwitchError

__all__ = ["register"]

_EXAMPLES = "examples:" + __doc__.split("Examples::", 1)[1]
# How often the foreground command looks at its server: a crash is reported within this.
_WATCH_INTERVAL_S = 0.25
# Longer than the supervisor's longest restart backoff (30 s).
_MAX_RESTART_WAIT_S = 35.0
# States after which a server will not come back by itself (unless it restarts).
_FINAL_STATES = frozenset({"stopped", "failed", "crashed"})


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``switch``, ``start``, ``stop``, ``status`` and ``logs``."""
    for name, help_text in (
        ("switch", "serve a model on a port, replacing what llamaswitch runs there"),
        ("start", "serve a model alongside the others, on a free port"),
    ):
        parser = sub.add_parser(
            name,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. In-process it serves in the "
            "foreground until Ctrl-C; with --url it asks the service and returns once the "
            "server is ready. Options mirror llama-server's and ServerConfig's fields; unset "
            "ones keep llama.cpp's defaults.",
            epilog=_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("model", help="model file name, path in the models folder, or name")
        _add_server_config_options(parser, with_port=True)
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="with --url: return as soon as the process runs (state starting)",
        )
        parser.add_argument(
            "-f",
            "--follow",
            action="store_true",
            help="in-process: print the server's log lines as they come",
        )
        parser.add_argument("--json", action="store_true", help="print the status as JSON")
        add_backend_options(parser)
        parser.set_defaults(handler=guarded(_run_switch), start=name == "start")

    stop = sub.add_parser(
        "stop",
        help="stop a model server (by model or port), or all with --all",
        description="Stop one model server, by model name or port, or every server with --all.",
    )
    stop.add_argument("model", nargs="?", help="model name of the server to stop")
    stop.add_argument("--port", type=port_number, help="port of the server to stop")
    stop.add_argument("--all", action="store_true", help="stop every server")
    stop.add_argument("--json", action="store_true", help="print the stopped servers as JSON")
    add_backend_options(stop)
    stop.set_defaults(handler=guarded(_run_stop))

    status = sub.add_parser(
        "status",
        help="state, URL, PID and memory of the model servers",
        description="Status of every model server, or of one by model name or port: state, "
        "URL, process id, start time, VRAM and RAM. Exit code 3 when the named server "
        "does not exist.",
    )
    status.add_argument("model", nargs="?", help="model name of one server")
    status.add_argument("--port", type=port_number, help="port of one server")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_backend_options(status)
    status.set_defaults(handler=guarded(_run_status))

    logs = sub.add_parser(
        "logs",
        help="the last lines a model server printed",
        description="Print the last lines a model server printed (by model name or port; "
        "the only server when there is one).",
    )
    logs.add_argument("model", nargs="?", help="model name of the server")
    logs.add_argument("--port", type=port_number, help="port of the server")
    logs.add_argument(
        "-n", "--lines", type=positive_int, default=100, help="how many lines (default 100)"
    )
    logs.add_argument("--json", action="store_true", help="print the lines as a JSON list")
    add_backend_options(logs)
    logs.set_defaults(handler=guarded(_run_logs))


# -- options that build a ServerConfig --------------------------------------------------


def _add_server_config_options(parser: argparse.ArgumentParser, *, with_port: bool) -> None:
    """llama-server's options, named as ServerConfig's fields (and llama.cpp's short flags).

    Values are passed on as typed as the command line allows and validated by
    ``ServerConfig.from_dict``, so the messages (and the rules) are the library's.
    """
    group = parser.add_argument_group("server config (ServerConfig fields)")
    add = group.add_argument
    # fmt: off
    add("--config", dest="config_json", metavar="JSON|@FILE",
        help="a ServerConfig as JSON, or @file.json; the options below override its keys")
    add("--host", help="address llama-server listens on (default 127.0.0.1)")
    if with_port:
        add("--port", type=_lenient_int, help="port (switch: the default model port; "
            "start: a free one of the model port range)")
    add("-t", "--threads", type=_lenient_int, help="CPU threads for generation")
    add("-tb", "--threads-batch", type=_lenient_int, help="CPU threads for prompt processing")
    add("-c", "--ctx-size", type=_lenient_int, help="context size in tokens (0: the model's)")
    add("-b", "--batch-size", type=_lenient_int, help="logical batch size")
    add("-ub", "--ubatch-size", type=_lenient_int, help="physical (micro) batch size")
    add("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", type=_lenient_int,
        metavar="N|all|auto", help="layers offloaded to GPUs (default: GPU_LAYERS setting)")
    add("-fa", "--flash-attn", nargs="?", const="on", type=_flash_attn, metavar="on|off|auto",
        help="flash attention (bare flag: on)")
    add("-sm", "--split-mode", help="none, layer, row (tensor: current builds)")
    add("-ts", "--tensor-split", metavar="SHARES", help='share per GPU, e.g. "0.5,0.5"')
    add("-mg", "--main-gpu", type=_lenient_int, help="main GPU index")
    add("--mlock", action="store_true", default=None, help="keep the model in RAM")
    add("--no-mmap", action="store_true", default=None, help="do not memory-map the model")
    add("-ctk", "--cache-type-k", help="K cache type (f16, q8_0, ...)")
    add("-ctv", "--cache-type-v", help="V cache type")
    add("-np", "--parallel", type=_lenient_int, help="server slots (concurrent requests)")
    add("-a", "--alias", help="model name the server reports")
    add("--restart", choices=("no", "on-failure"), help="restart after a crash (default no)")
    add("--restart-max", type=int, metavar="N",
        help="with on-failure: restarts in a row before giving up (default 5)")
    add("--restart-backoff", dest="restart_backoff_s", type=float, metavar="SECONDS",
        help="with on-failure: first wait before a restart, doubling (default 0.5)")
    add("--env", action="append", metavar="NAME=VALUE",
        help="extra environment variable for llama-server (repeatable)")
    add("--extra-arg", dest="extra_args", action="append", metavar="ARG",
        help="extra llama-server argument, passed last (repeatable; write --extra-arg=--foo)")
    # fmt: on


_CONFIG_FIELDS = (
    "host", "port", "threads", "threads_batch", "ctx_size", "batch_size", "ubatch_size",
    "n_gpu_layers", "flash_attn", "split_mode", "tensor_split", "main_gpu", "mlock",
    "no_mmap", "cache_type_k", "cache_type_v", "parallel", "alias", "restart", "restart_max",
    "restart_backoff_s", "extra_args",
)  # fmt: skip


def server_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ServerConfig fields the command line sets, as a JSON-ready dict."""
    config: dict[str, Any] = dict(load_config_json(getattr(args, "config_json", None)))
    for field in _CONFIG_FIELDS:
        given = getattr(args, field, None)
        if given is not None:
            config[field] = given
    if getattr(args, "env", None):
        env = dict(config.get("env") or {})
        for item in args.env:
            name, sep, val = item.partition("=")
            if not sep or not name:
                raise usage_error(f"--env {item!r}: write NAME=VALUE")
            env[name] = val
        config["env"] = env
    return config


def load_config_json(raw: str | None) -> Mapping[str, Any]:
    """``--config``: a JSON object, inline or ``@path``."""
    if raw is None:
        return {}
    source = raw
    if raw.startswith("@"):
        try:
            source = Path(raw[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise usage_error(f"--config {raw}: cannot read the file: {exc}") from None
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise usage_error(f"--config: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise usage_error("--config: must be a JSON object of config fields")
    return data


def _lenient_int(raw: str) -> int | str:
    # Not argparse's int: a value that is no number is left for ServerConfig, whose
    # message names the field and what is allowed (one set of rules, the library's).
    try:
        return int(raw)
    except ValueError:
        return raw


def _flash_attn(raw: str) -> bool | str:
    word = raw.strip().lower()
    return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
        word, word
    )


# -- switch / start -----------------------------------------------------------------------


def _run_switch(args: argparse.Namespace) -> int:
    config = server_config_from_args(args)
    remote = bool(args.url)
    if not remote and args.no_wait:
        raise usage_error(
            "--no-wait needs --url: in-process the server lives as long as this command, "
            "which serves in the foreground until Ctrl-C"
        )
    if remote and args.follow:
        raise usage_error("--follow works in-process only; use `llamaswitch logs` with --url")
    with open_backend(args) as backend:
        call = backend.start if args.start else backend.switch
        status = call(args.model, config, wait=not args.no_wait)
        if remote:
            _print_started(status, args, remote=True)
            return EXIT_OK
        _print_started(status, args, remote=False)
        assert isinstance(backend, LocalBackend)  # noqa: S101 - no --url means in-process
        return _serve_foreground(backend, status, follow=args.follow, json_out=args.json)


def _print_started(status: Mapping[str, Any], args: argparse.Namespace, *, remote: bool) -> None:
    if args.json:
        print_json(status)
        sys.stdout.flush()
        return
    state = status.get("state") or ("ready" if status.get("running") else "?")
    url = value(status, "url") or f"http://{status.get('host', '127.0.0.1')}:{status.get('port')}"
    ready = status.get("ready_after_s")
    facts = [f"pid {status.get('process_id')}"]
    if isinstance(ready, int | float):
        facts.append(f"ready in {ready:.2f} s")
    if remote:
        facts.append(f"run by {args.url}")
    model = status.get("model_name", args.model)
    console().print(
        f"{escape(str(model))} {escape(str(state))} at [bold]{escape(str(url))}[/] "
        f"({escape(', '.join(facts))})"
    )


def _serve_foreground(
    backend: LocalBackend, status: Mapping[str, Any], *, follow: bool, json_out: bool
) -> int:
    """Keep the in-process server running until Ctrl-C/SIGTERM or until it dies."""
    port = status.get("port")
    if not isinstance(port, int):
        raise CommandError(f"the server's status names no port: {status!r}", EXIT_FAILED)
    notes = err_console()
    notes.print("[dim]serving in the foreground; Ctrl-C stops the server[/]")
    follower = _LogFollower(backend.log_file(port)) if follow else None
    # With --json, stdout holds one JSON document: the log goes to stderr.
    log_out = sys.stderr if json_out else sys.stdout
    config = status.get("config")
    restarts = isinstance(config, Mapping) and config.get("restart") == "on-failure"
    down_since: float | None = None
    try:
        while True:
            if follower is not None:
                for line in follower.new_lines():
                    print(line, file=log_out, flush=True)
            time.sleep(_WATCH_INTERVAL_S)
            now = backend.status(port=port)
            if now.get("state") not in _FINAL_STATES:
                down_since = None
                continue
            down_since = down_since if down_since is not None else time.monotonic()
            if not restarts or _restarts_over(now, down_since):
                return _report_ended(backend, now, port)
    except KeyboardInterrupt:
        pass
    finally:
        if follower is not None:
            follower.close()
    # Stop here, not in close(), so the user sees it happen; a second Ctrl-C must not
    # cut the stop short and leave the child to the parent-death signal.
    with _ignore_sigint():
        notes.print("[dim]stopping the server...[/]")
        backend.stop(port=port)
        backend.close()
    notes.print("stopped")
    return EXIT_OK


def _restarts_over(status: Mapping[str, Any], down_since: float) -> bool:
    """Whether a server with ``restart="on-failure"`` will stay down.

    The supervisor restarts after a non-zero exit, with a backoff of at most 30 s, and
    says in ``error`` when it gives up or cannot restart; a server down for longer than
    the longest backoff is not coming back either.
    """
    if status.get("state") == "stopped" or status.get("exit_code") == 0:
        return True
    error = str(status.get("error") or "")
    if "gave up" in error or "not restarted" in error:
        return True
    return time.monotonic() - down_since > _MAX_RESTART_WAIT_S


def _report_ended(backend: Backend, status: Mapping[str, Any], port: int) -> int:
    state = status.get("state")
    detail = status.get("error") or (
        f"exit code {status.get('exit_code')}" if status.get("exit_code") is not None else ""
    )
    print(f"llamaswitch: the server on port {port} is {state}"
          + (f": {detail}" if detail else ""), file=sys.stderr)  # fmt: skip
    tail = status.get("log_tail")
    if not tail:
        with contextlib.suppress(CommandError, LlamaSwitchError):
            tail = backend.logs(port=port, lines=20)
    if tail:
        print("--- last log lines ---", *tail, sep="\n", file=sys.stderr)
    return EXIT_FAILED


class _LogFollower:
    """``tail -f`` of a server's log file, from the start of its current process.

    The supervisor writes everything the server prints to ``server-PORT.log`` (rotated
    to ``.1`` when big) and a ``=== llamaswitch ... starting`` line before each spawn;
    the follower starts at the last such line, so the user sees the server's whole
    start-up, then each new line. A file rather than ``logs()`` snapshots: the file has
    a position to continue from, a ring buffer of the last lines has none.
    """

    _MARKER = b"=== llamaswitch "

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._partial = b""
        self._open(from_marker=True)

    def _open(self, *, from_marker: bool) -> None:
        try:
            file = self._path.open("rb")
        except OSError:
            return
        if from_marker:
            data = file.read()
            start = data.rfind(self._MARKER)
            file.seek(start if start >= 0 else len(data))
        self._file = file

    def new_lines(self) -> list[str]:
        """Complete lines written since the last call."""
        if self._file is None:
            self._open(from_marker=True)
            if self._file is None:
                return []
        chunk = self._file.read()
        if not chunk and self._rotated():
            self._file.close()
            self._open(from_marker=False)
            chunk = self._file.read() if self._file is not None else b""
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [line.rstrip(b"\r").decode("utf-8", "replace") for line in complete]

    def _rotated(self) -> bool:
        assert self._file is not None  # noqa: S101 - checked by the caller
        try:
            return os.stat(self._path).st_ino != os.fstat(self._file.fileno()).st_ino
        except OSError:
            return False

    def close(self) -> None:
        """Print nothing more."""
        if self._file is not None:
            self._file.close()
            self._file = None


@contextlib.contextmanager
def _ignore_sigint() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- stop / status / logs -----------------------------------------------------------------


def _run_stop(args: argparse.Namespace) -> int:
    if args.model is None and args.port is None and not args.all:
        raise usage_error("name a server (MODEL or --port), or stop every one with --all")
    if args.all and (args.model is not None or args.port is not None):
        raise usage_error("--all stops every server; do not name one as well")
    with open_backend(args) as backend:
        stopped = backend.stop(args.model, port=args.port)
        where = backend.where
    servers = stopped if isinstance(stopped, list) else [stopped] if stopped else []
    if args.json:
        print_json(servers)
        return EXIT_OK
    out = console()
    if not servers:
        out.print(f"no model server was running ({where})")
    for server in servers:
        out.print(f"stopped {escape(str(server.get('model_name')))} on port {server.get('port')}")
    return EXIT_OK


def _run_status(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        found = backend.status(args.model, port=args.port)
        where = backend.where
        persistent = backend.persistent
    if args.json:
        print_json(found)
        return EXIT_OK
    servers = found if isinstance(found, list) else [found]
    out = console()
    if not servers:
        out.print(f"no model servers running ({where})")
        if not persistent:
            out.print(
                "[dim]in-process, status sees only this command's servers; servers started "
                "by `llamaswitch switch` live in that command. For a running service: "
                "--url URL or LLAMASWITCH_URL[/]"
            )
        return EXIT_OK
    out.print(status_table(servers))
    for server in servers:
        if server.get("error"):
            out.print(f"[red]port {server.get('port')}: {escape(str(server['error']))}[/]")
    return EXIT_OK


def status_table(servers: list[dict[str, Any]]) -> Table:
    """One row per server; the JSON output has every field."""
    table = Table(title=f"{len(servers)} model server{'s' if len(servers) != 1 else ''}")
    table.add_column("port", justify="right", no_wrap=True)
    table.add_column("model", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("url", no_wrap=True)
    table.add_column("VRAM MiB", justify="right")
    table.add_column("RSS MiB", justify="right")
    table.add_column("CPU %", justify="right")
    for server in servers:
        vram, rss, cpu = server.get("vram_usage"), server.get("rss_mib"), server.get("cpu_percent")
        table.add_row(
            text(server.get("port")),
            escape(text(server.get("model_name"))),
            _state_cell(server.get("state"), server.get("running")),
            text(server.get("process_id")),
            escape(text(server.get("url"))),
            f"{vram:.0f}" if isinstance(vram, int | float) else "",
            f"{rss:.0f}" if isinstance(rss, int | float) else "",
            f"{cpu:.0f}" if isinstance(cpu, int | float) else "",
        )
    return table


_STATE_STYLE = {"ready": "green", "starting": "yellow", "stopping": "yellow",
                "failed": "bold red", "crashed": "bold red"}  # fmt: skip


def _state_cell(state: Any, running: Any) -> str:
    if state is None:
        state = "running" if running else "stopped"
    style = _STATE_STYLE.get(str(state))
    return f"[{style}]{escape(str(state))}[/]" if style else escape(str(state))


def _run_logs(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        lines = backend.logs(args.model, port=args.port, lines=args.lines)
    if args.json:
        print_json(lines)
        return EXIT_OK
    for line in lines:
        print(line)
    return EXIT_OK
