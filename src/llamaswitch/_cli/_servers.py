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
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from rich.markup import escape
from rich.table import Table

from llamaswitch._cli._api import (
    add_backend_options,
    guarded,
    is_remote,
    open_api,
    print_json,
    usage_error,
    where,
)
from llamaswitch._cli._common import EXIT_FAILED, EXIT_OK, port_number, positive_int
from llamaswitch._cli._interrupts import ctrl_c_ignored, watching
from llamaswitch._cli._render import console, err_console, text
from llamaswitch._errors import LlamaSwitchError
from llamaswitch._vocabulary import add_options, options_to_data
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.status import ServerState, ServerStatus

if TYPE_CHECKING:
    from llamaswitch._sync import LlamaSwitch

__all__ = ["register"]

_EXAMPLES = "examples:" + __doc__.split("Examples::", 1)[1]
# How often the foreground command looks at its server: a crash is reported within this.
_WATCH_INTERVAL_S = 0.25
# Longer than the supervisor's longest restart backoff (30 s).
_MAX_RESTART_WAIT_S = 35.0
# States after which a server will not come back by itself (unless it restarts).
_FINAL_STATES = frozenset({ServerState.STOPPED, ServerState.FAILED, ServerState.CRASHED})


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
    """llama-server's options: one per ServerConfig field, spelled as its spec says (the
    llama.cpp flags, so a pasted command line works).

    Values are passed on as typed as the command line allows and validated by
    ``ServerConfig.from_dict``, so the messages (and the rules) are the library's.
    """
    group = parser.add_argument_group("server config (ServerConfig fields)")
    group.add_argument(
        "--config", dest="config_json", metavar="JSON|@FILE",
        help="a ServerConfig as JSON, or @file.json; the options below override its keys",
    )  # fmt: skip
    add_options(group, ServerConfig, skip=() if with_port else ("port",))


def server_config_from_args(args: argparse.Namespace) -> ServerConfig | None:
    """The ServerConfig the command line describes (None when it sets nothing)."""
    config: dict[str, Any] = dict(load_config_json(getattr(args, "config_json", None)))
    given = options_to_data(args, ServerConfig)
    if "env" in given:
        env = dict(config.get("env") or {})
        for item in given.pop("env"):
            name, sep, val = item.partition("=")
            if not sep or not name:
                raise usage_error(f"--env {item!r}: write NAME=VALUE")
            env[name] = val
        config["env"] = env
    config.update(given)
    return ServerConfig.from_dict(config) if config else None


def json_object_arg(option: str, raw: str, what: str = "") -> Mapping[str, Any]:
    """An option's JSON object, given inline or as ``@path``; ``what`` it holds, for the
    error when it is not an object."""
    source = raw
    if raw.startswith("@"):
        try:
            source = Path(raw[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise usage_error(f"{option} {raw}: cannot read the file: {exc}") from None
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise usage_error(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise usage_error(f"{option}: must be a JSON object{f' of {what}' if what else ''}")
    return data


def load_config_json(raw: str | None) -> Mapping[str, Any]:
    """``--config``: a JSON object of config fields, inline or ``@path``."""
    return {} if raw is None else json_object_arg("--config", raw, "config fields")


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
    with open_api(args) as api:
        call = api.start if args.start else api.switch
        status = call(args.model, config, wait=not args.no_wait)
        _print_started(status, args, remote=remote)
        if remote:
            return EXIT_OK
        # No --url means the library in this process.
        return _serve_foreground(cast("LlamaSwitch", api), status, follow=args.follow,
                                 json_out=args.json)  # fmt: skip


def _print_started(status: ServerStatus, args: argparse.Namespace, *, remote: bool) -> None:
    if args.json:
        print_json(status)
        sys.stdout.flush()
        return
    facts = [f"pid {status.process_id}"]
    if status.ready_after_s is not None:
        facts.append(f"ready in {status.ready_after_s:.2f} s")
    if remote:
        facts.append(f"run by {args.url}")
    console().print(
        f"{escape(status.model_name)} {escape(str(status.state))} at [bold]"
        f"{escape(status.url)}[/] ({escape(', '.join(facts))})"
    )


def _serve_foreground(api: LlamaSwitch, status: ServerStatus, *, follow: bool,
                      json_out: bool) -> int:  # fmt: skip
    """Keep the in-process server running until Ctrl-C/SIGTERM or until it dies."""
    port = status.port
    notes = err_console()
    notes.print("[dim]serving in the foreground; Ctrl-C stops the server[/]")
    follower = _LogFollower(api.aio.supervisor.log_path(port)) if follow else None
    # With --json, stdout holds one JSON document: the log goes to stderr.
    log_out = sys.stderr if json_out else sys.stdout
    restarts = status.config.restart == "on-failure"
    down_since: float | None = None
    try:
        with watching() as watch:
            while True:
                if follower is not None:
                    for line in follower.new_lines():
                        print(line, file=log_out, flush=True)
                watch.sleep(_WATCH_INTERVAL_S)
                now = api.status(port=port)
                if now.state not in _FINAL_STATES:
                    down_since = None
                    continue
                down_since = down_since if down_since is not None else time.monotonic()
                if not restarts or _restarts_over(now, down_since):
                    return _report_ended(api, now, port)
    except KeyboardInterrupt:
        pass
    finally:
        if follower is not None:
            follower.close()
    # Stop here, not in close(), so the user sees it happen; a second Ctrl-C must not
    # cut the stop short and leave the child to the parent-death signal.
    with ctrl_c_ignored():
        notes.print("[dim]stopping the server...[/]")
        api.stop(port=port)
        api.close()
    notes.print("stopped")
    return EXIT_OK


def _restarts_over(status: ServerStatus, down_since: float) -> bool:
    """Whether a server with ``restart="on-failure"`` will stay down.

    The supervisor restarts after a non-zero exit, with a backoff of at most 30 s, and
    says in ``error`` when it gives up or cannot restart; a server down for longer than
    the longest backoff is not coming back either.
    """
    if status.state is ServerState.STOPPED or status.exit_code == 0:
        return True
    error = status.error or ""
    if "gave up" in error or "not restarted" in error:
        return True
    return time.monotonic() - down_since > _MAX_RESTART_WAIT_S


def _report_ended(api: LlamaSwitch, status: ServerStatus, port: int) -> int:
    detail = status.error or (
        f"exit code {status.exit_code}" if status.exit_code is not None else ""
    )
    print(f"llamaswitch: the server on port {port} is {status.state}"
          + (f": {detail}" if detail else ""), file=sys.stderr)  # fmt: skip
    tail = list(status.log_tail)
    if not tail:
        with contextlib.suppress(LlamaSwitchError):
            tail = api.logs(port=port, lines=20)
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


# -- stop / status / logs -----------------------------------------------------------------


def _run_stop(args: argparse.Namespace) -> int:
    if args.model is None and args.port is None and not args.all:
        raise usage_error("name a server (MODEL or --port), or stop every one with --all")
    if args.all and (args.model is not None or args.port is not None):
        raise usage_error("--all stops every server; do not name one as well")
    with open_api(args) as api:
        stopped = api.stop(args.model, port=args.port)
        place = where(api)
    if args.json:
        print_json(stopped)
        return EXIT_OK
    out = console()
    if not stopped:
        out.print(f"no model server was running ({place})")
    for server in stopped:
        out.print(f"stopped {escape(server.model_name)} on port {server.port}")
    return EXIT_OK


def _run_status(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        # MODEL and --port together: the library checks that they name one server.
        if args.model is not None:
            found: ServerStatus | list[ServerStatus] = api.status(args.model, port=args.port)
        elif args.port is not None:
            found = api.status(port=args.port)
        else:
            found = api.status()
        place, remote = where(api), is_remote(api)
    if args.json:
        print_json(found)
        return EXIT_OK
    servers = found if isinstance(found, list) else [found]
    out = console()
    if not servers:
        out.print(f"no model servers running ({place})")
        if not remote:
            out.print(
                "[dim]in-process, status sees only this command's servers; servers started "
                "by `llamaswitch switch` live in that command. For a running service: "
                "--url URL or LLAMASWITCH_URL[/]"
            )
        return EXIT_OK
    out.print(status_table(servers))
    for server in servers:
        if server.error:
            out.print(f"[red]port {server.port}: {escape(server.error)}[/]")
    return EXIT_OK


def status_table(servers: list[ServerStatus]) -> Table:
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
        vram, rss, cpu = server.vram_usage, server.rss_mib, server.cpu_percent
        table.add_row(
            text(server.port),
            escape(server.model_name),
            _state_cell(server.state, server.load_progress),
            text(server.process_id),
            escape(server.url),
            f"{vram:.0f}" if vram is not None else "",
            f"{rss:.0f}" if rss is not None else "",
            f"{cpu:.0f}" if cpu is not None else "",
        )
    return table


_STATE_STYLE = {"ready": "green", "starting": "yellow", "stopping": "yellow",
                "unresponsive": "bold yellow", "failed": "bold red",
                "crashed": "bold red"}  # fmt: skip


def _state_cell(state: ServerState, progress: float | None = None) -> str:
    style = _STATE_STYLE.get(str(state))
    cell = f"[{style}]{escape(str(state))}[/]" if style else escape(str(state))
    # A long load says how far it came (the current build, every 200 ms).
    return cell if progress is None else f"{cell} {progress:.0%}"


def _run_logs(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        lines = api.logs(args.model, port=args.port, lines=args.lines)
    if args.json:
        print_json(lines)
        return EXIT_OK
    for line in lines:
        print(line)
    return EXIT_OK
