"""How CLI commands reach llamaswitch: in this process, or a running service over HTTP.

Every command talks to a :class:`Backend`. Two exist:

- :class:`LocalBackend` (the default) drives the library in this process through the
  blocking :class:`~llamaswitch.LlamaSwitch`. What it starts lives as long as the command.
- :class:`RemoteBackend` (``--url URL``, or ``LLAMASWITCH_URL``) calls the REST API of a
  running ``llamaswitch serve`` with the standard library's ``urllib``: the library
  package never imports aiohttp.

Both answer with the same plain JSON data, the REST API's ``data`` shapes, so that
``--json`` output is the same whichever way a command ran. Both turn failures into a
:class:`CommandError` carrying the exit code that scripts rely on:

====  ============================================================  ===============
code  meaning                                                       HTTP status
====  ============================================================  ===============
0     success
1     the operation failed (a server did not start, a benchmark     500, other
      failed or was cancelled or interrupted, a wait timed out)
2     bad usage or input: an option, a config field, a setting      400, 422
3     something required is missing: model, llama.cpp binary,      404, 503
      server, benchmark task
4     conflict: port in use, the API's own port, a superseded       409
      switch
5     the service at ``--url`` cannot be reached, refused the       401, 403
      API key, or did not answer like llamaswitch
130   interrupted (Ctrl-C) where that is not the normal way to end
====  ============================================================  ===============
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import functools
import http.client
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from llamaswitch._cli._common import (
    EXIT_FAILED,
    EXIT_MISSING,
    EXIT_USAGE,
    load_settings,
)
from llamaswitch._errors import (
    BenchParseError,
    BinaryIdentityError,
    BinaryNotFoundError,
    ConfigValidationError,
    LlamaSwitchError,
    ModelNotFoundError,
    ModelPathError,
    PortInUseError,
    ReservedPortError,
    ServerNotFoundError,
    SettingsError,
    SupersededError,
    TaskNotFoundError,
    UnsupportedOptionError,
)

if TYPE_CHECKING:
    from llamaswitch._settings import Settings
    from llamaswitch._sync import LlamaSwitch

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_INTERRUPTED",
    "EXIT_UNREACHABLE",
    "Backend",
    "CommandError",
    "LocalBackend",
    "RemoteBackend",
    "add_backend_options",
    "exit_code_for",
    "exit_code_for_status",
    "guarded",
    "open_backend",
    "print_json",
    "to_wire",
]

EXIT_CONFLICT = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130

URL_ENV = "LLAMASWITCH_URL"
API_KEY_ENV = "LLAMASWITCH_API_KEY"
API_PREFIX = "/api/v1"
# Plain requests answer in milliseconds; this only bounds a service that hangs.
REQUEST_TIMEOUT_S = 60.0
# What a failed connection raises (refused, reset, timed out, a garbled HTTP answer).
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class CommandError(Exception):
    """A command failed in a way the user should read about; ``exit_code`` says how.

    ``details`` are extra lines printed under the message (validation errors per field,
    the last log lines of a server that did not start).
    """

    def __init__(self, message: str, exit_code: int, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = list(details)


# -- exit codes -----------------------------------------------------------------------

# Ordered most specific first: several errors derive from ValueError or LookupError, and
# a subclass must win over its base. Mirrors the REST adapter's status codes (see the
# table in the module docstring) so a command exits alike in-process and with --url.
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (SettingsError, EXIT_USAGE),
    (ConfigValidationError, EXIT_USAGE),
    (UnsupportedOptionError, EXIT_USAGE),
    (ModelPathError, EXIT_USAGE),
    (BenchParseError, EXIT_USAGE),
    (ModelNotFoundError, EXIT_MISSING),
    (ServerNotFoundError, EXIT_MISSING),
    (TaskNotFoundError, EXIT_MISSING),
    (BinaryNotFoundError, EXIT_MISSING),
    (BinaryIdentityError, EXIT_MISSING),
    (PortInUseError, EXIT_CONFLICT),
    (ReservedPortError, EXIT_CONFLICT),
    (SupersededError, EXIT_CONFLICT),
)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a library error (1 for any error without a specific code)."""
    for kind, code in _EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILED


def exit_code_for_status(status: int) -> int:
    """The exit code of an HTTP error status from the REST API."""
    if status in (400, 413, 415, 422):
        return EXIT_USAGE
    if status in (404, 503):
        return EXIT_MISSING
    if status == 409:
        return EXIT_CONFLICT
    if status in (401, 403):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


# -- wire data ------------------------------------------------------------------------


def to_wire(value: Any) -> Any:
    """Plain JSON data for a library value, as the REST API puts it in ``data``.

    Objects with a ``to_dict()`` (the library's own wire shape) use it; other attrs
    classes become dicts of their fields; paths and datetimes become strings (datetimes
    in ISO 8601), tuples and sets lists, enums their value.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_wire(to_dict())
    if attrs.has(type(value)):
        return {f.name: to_wire(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is dt.UTC:
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_wire(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        return [to_wire(v) for v in value]
    return str(value)


def print_json(data: Any) -> None:
    """Print data for scripts: indented, keys in their natural order, UTF-8 kept."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


# -- backends -------------------------------------------------------------------------


class Backend(Protocol):
    """What the commands need; every method answers with plain JSON data."""

    #: Where commands run, for messages ("in-process" or the service's URL).
    where: str
    #: True when servers started through this backend outlive the command.
    persistent: bool

    def list_models(self) -> list[dict[str, Any]]: ...

    def switch(self, model: str, config: Mapping[str, Any], *, wait: bool) -> dict[str, Any]: ...

    def start(self, model: str, config: Mapping[str, Any], *, wait: bool) -> dict[str, Any]: ...

    def stop(self, model: str | None = None, *, port: int | None = None) -> Any: ...

    def status(self, model: str | None = None, *, port: int | None = None) -> Any: ...

    def logs(
        self, model: str | None = None, *, port: int | None = None, lines: int = 100
    ) -> list[str]: ...

    def submit_benchmark(
        self, model: str, config: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]: ...

    def benchmark_status(self, task_id: str) -> dict[str, Any]: ...

    def cancel_benchmark(self, task_id: str) -> dict[str, Any]: ...

    def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]: ...

    def compare_benchmarks(self, task_ids: Sequence[str]) -> dict[str, Any]: ...

    def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalBackend:
    """The library in this process, through the blocking :class:`~llamaswitch.LlamaSwitch`.

    The ``LlamaSwitch`` opens on first use only: ``models`` then needs no supervisor and
    no benchmark database, so listing models never touches the state folder.
    """

    where = "in-process"
    persistent = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ls: LlamaSwitch | None = None

    @property
    def ls(self) -> LlamaSwitch:
        """The library object, opened on first use."""
        if self._ls is None:
            from llamaswitch._sync import LlamaSwitch

            self._ls = LlamaSwitch(self.settings)
        return self._ls

    def close(self) -> None:
        """Stop what this process started (servers, benchmarks) and the loop thread."""
        if self._ls is not None:
            ls, self._ls = self._ls, None
            ls.close()

    def list_models(self) -> list[dict[str, Any]]:
        """The catalog (read directly: listing starts nothing)."""
        from llamaswitch._catalog import ModelCatalog

        catalog = ModelCatalog(
            self.settings.models_dir, allow_outside=self.settings.allow_outside_models_dir
        )
        return [to_wire(m) for m in catalog.list_models()]

    def switch(self, model: str, config: Mapping[str, Any], *, wait: bool) -> dict[str, Any]:
        """Serve ``model`` on the config's port, replacing what runs there."""
        status = self.ls.switch(model, _server_config(config), wait=wait)
        return dict(to_wire(status))

    def start(self, model: str, config: Mapping[str, Any], *, wait: bool) -> dict[str, Any]:
        """Serve ``model`` alongside the others."""
        status = self.ls.start(model, _server_config(config), wait=wait)
        return dict(to_wire(status))

    def stop(self, model: str | None = None, *, port: int | None = None) -> Any:
        """Stop one server (by model or port) or all; the stopped servers' status."""
        return to_wire(self.ls.stop(model, port=port))

    def status(self, model: str | None = None, *, port: int | None = None) -> Any:
        """One server's status (by model or port) or a list of all."""
        if model is None and port is None:
            return to_wire(self.ls.status())
        if port is not None:
            # A port names exactly one server; the model name adds nothing to look up.
            return to_wire(self.ls.status(port=port))
        assert model is not None  # noqa: S101 - narrowed by the branches above
        return to_wire(self.ls.status(model))

    def logs(
        self, model: str | None = None, *, port: int | None = None, lines: int = 100
    ) -> list[str]:
        """The last ``lines`` lines a server printed."""
        return list(self.ls.logs(model, port=port, lines=lines))

    def log_file(self, port: int) -> Path:
        """The log file of the server on ``port`` (following it needs no polling API)."""
        return self.ls.aio.supervisor.log_path(port)

    def submit_benchmark(
        self, model: str, config: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Queue a benchmark; the new task."""
        task_id = self.ls.submit_benchmark(model, _bench_config(config), timeout_s=timeout_s)
        return self.benchmark_status(task_id)

    def benchmark_status(self, task_id: str) -> dict[str, Any]:
        """The task now."""
        return dict(to_wire(self.ls.benchmark_status(task_id)))

    def cancel_benchmark(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued or running task."""
        return dict(to_wire(self.ls.cancel_benchmark(task_id)))

    def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Benchmark history, newest first."""
        tasks = self.ls.list_benchmarks(
            model=model, state=state, since=since, until=until, limit=limit
        )
        return [to_wire(t) for t in tasks]

    def compare_benchmarks(self, task_ids: Sequence[str]) -> dict[str, Any]:
        """Several tasks' results side by side."""
        return dict(to_wire(self.ls.compare_benchmarks(task_ids)))

    def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> dict[str, Any]:
        """Record results of a run made elsewhere."""
        return dict(to_wire(self.ls.import_benchmark(text, fmt, model=model)))


def _server_config(config: Mapping[str, Any]) -> Any:
    # Built by the library so its validation (and its messages) apply unchanged.
    from llamaswitch.servers.config import ServerConfig

    return ServerConfig.from_dict(dict(config)) if config else None


def _bench_config(config: Mapping[str, Any]) -> Any:
    from llamaswitch.bench.config import BenchConfig

    return BenchConfig.from_dict(dict(config)) if config else None


class RemoteBackend:
    """A running ``llamaswitch serve``, over its REST API (``urllib``, no extra packages).

    Unwraps the envelope ``{"success", "message", "data", "error"}``: ``data`` on success,
    a :class:`CommandError` with the service's message and the exit code of the HTTP
    status otherwise.
    """

    persistent = True

    def __init__(
        self, url: str, *, api_key: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CommandError(
                f"--url {url!r} is not an http(s) URL such as http://127.0.0.1:8080",
                EXIT_USAGE,
            )
        self.base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.where = self.base
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.last_message = ""

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""

    # -- transport ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout_s: float | None = -1.0,
    ) -> Any:
        """Send one request to ``/api/v1`` + ``path``; the envelope's ``data``.

        ``timeout_s`` of None waits as long as the service takes (a switch waiting for a
        big model to load); the default is :data:`REQUEST_TIMEOUT_S`.
        """
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        url = f"{self.base}{API_PREFIX}{path}"
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - the scheme is checked to be http(s) in __init__
        timeout = self.timeout_s if timeout_s == -1.0 else timeout_s
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        except _NETWORK_ERRORS as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(
                f"cannot reach llamaswitch at {self.base}: {reason}", EXIT_UNREACHABLE,
                ["is `llamaswitch serve` running there? (--url, or LLAMASWITCH_URL)"],
            ) from None  # fmt: skip
        return self._unwrap(method, path, status, raw)

    def _unwrap(self, method: str, path: str, status: int, raw: bytes) -> Any:
        try:
            envelope = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            snippet = raw[:200].decode("utf-8", "replace").strip()
            raise CommandError(
                f"{method} {path} at {self.base}: HTTP {status}, not a llamaswitch "
                f"response: {snippet!r}",
                EXIT_UNREACHABLE if status < 500 else EXIT_FAILED,
            )
        self.last_message = str(envelope.get("message") or "")
        if envelope.get("success") and status < 400:
            return envelope.get("data")
        message = self.last_message or f"HTTP {status}"
        error = str(envelope.get("error") or "")
        data = envelope.get("data")
        info: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if status == 401:
            hint = "wrong key?" if self.api_key else "set LLAMASWITCH_API_KEY or --api-key"
            raise CommandError(f"{message}: {error or 'unauthorized'} ({hint})", EXIT_UNREACHABLE)
        if status in (404, 405) and info.get("code") in ("not_found", "method_not_allowed"):
            # The route itself is missing: an older or different service, not a missing
            # model or task.
            raise CommandError(
                f"the service at {self.base} does not offer {method} {API_PREFIX}{path} "
                f"({error or message})",
                EXIT_UNREACHABLE,
            )
        errors = info.get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            details = [f"  {item}" for item in errors]
            text = f"{message}:"
        else:
            details = []
            text = f"{message}: {error}" if error and error != message else message
        log_tail = info.get("log_tail")
        if isinstance(log_tail, list) and log_tail and "last log lines" not in error:
            details += ["--- last log lines ---", *(str(line) for line in log_tail)]
        raise CommandError(text, exit_code_for_status(status), details)

    # -- the API --------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        """``GET /models``."""
        return list(self.request("GET", "/models") or [])

    def switch(self, model: str, config: Mapping[str, Any], *, wait: bool) -> dict[str, Any]:
        """``POST /model/switch`` (``?wait=true`` answers once ready, or with the failure)."""
        body = {"model_path": model, "config": dict(config)}
        query = {"wait": "true"} if wait else None
        data = self.request("POST", "/model/switch", query=query, body=body,
                            timeout_s=None if wait else -1.0)  # fmt: skip
        return dict(data or {})

    def start(self, model: str, config: Mapping[str, Any], *, wait: bool) -> dict[str, Any]:
        """``POST /model/start``: a server alongside the others."""
        body = {"model_path": model, "config": dict(config)}
        query = {"wait": "true"} if wait else None
        data = self.request("POST", "/model/start", query=query, body=body,
                            timeout_s=None if wait else -1.0)  # fmt: skip
        return dict(data or {})

    def stop(self, model: str | None = None, *, port: int | None = None) -> Any:
        """``POST /model/stop`` with ``model_name`` or ``port``, or neither (all)."""
        body: dict[str, Any] = {}
        if model is not None:
            body["model_name"] = model
        if port is not None:
            body["port"] = port
        return self.request("POST", "/model/stop", body=body)

    def status(self, model: str | None = None, *, port: int | None = None) -> Any:
        """``GET /model/status[?model_name=|port=]``."""
        return self.request("GET", "/model/status", query={"model_name": model, "port": port})

    def logs(
        self, model: str | None = None, *, port: int | None = None, lines: int = 100
    ) -> list[str]:
        """``GET /model/logs``."""
        data = self.request(
            "GET", "/model/logs", query={"model_name": model, "port": port, "lines": lines}
        )
        if isinstance(data, Mapping):
            # Tolerate an object wrapping the lines ({"lines": [...], ...}).
            data = data.get("lines", [])
        return [str(line) for line in data or []]

    def submit_benchmark(
        self, model: str, config: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """``POST /benchmark``."""
        body: dict[str, Any] = {"model_path": model, "config": dict(config)}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        return dict(self.request("POST", "/benchmark", body=body) or {})

    def benchmark_status(self, task_id: str) -> dict[str, Any]:
        """``GET /benchmark/status?task_id=``."""
        return dict(self.request("GET", "/benchmark/status", query={"task_id": task_id}) or {})

    def cancel_benchmark(self, task_id: str) -> dict[str, Any]:
        """``POST /benchmark/cancel?task_id=``."""
        return dict(self.request("POST", "/benchmark/cancel", query={"task_id": task_id}) or {})

    def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """``GET /benchmarks`` with filters."""
        query = {"model": model, "state": state, "since": since, "until": until, "limit": limit}
        return list(self.request("GET", "/benchmarks", query=query) or [])

    def compare_benchmarks(self, task_ids: Sequence[str]) -> dict[str, Any]:
        """``GET /benchmarks/compare?task_ids=a,b``."""
        query = {"task_ids": ",".join(task_ids)}
        return dict(self.request("GET", "/benchmarks/compare", query=query) or {})

    def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> dict[str, Any]:
        """``POST /benchmarks/import``."""
        body: dict[str, Any] = {"text": text, "format": fmt}
        if model is not None:
            body["model"] = model
        return dict(self.request("POST", "/benchmarks/import", body=body) or {})


def _query_value(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- wiring into argparse ---------------------------------------------------------------


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--api-key``, for every command that can run against a service."""
    group = parser.add_argument_group("service")
    group.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or None,
        help=f"talk to a running `llamaswitch serve` at URL instead of working in this "
        f"process (default: ${URL_ENV}); e.g. http://127.0.0.1:8080",
    )
    group.add_argument(
        "--api-key",
        dest="api_key",
        default=None,
        help=f"API key of the service (default: ${API_KEY_ENV}; prefer the variable, "
        "a command line is visible to other users)",
    )


@contextmanager
def open_backend(args: argparse.Namespace) -> Iterator[Backend]:
    """The backend the options ask for; closing it stops what an in-process one started."""
    url = getattr(args, "url", None)
    backend: Backend
    if url:
        key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None
        backend = RemoteBackend(url, api_key=key)
    else:
        backend = LocalBackend(load_settings(args))
    try:
        yield backend
    finally:
        backend.close()


def guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command handler, turning errors into a message on stderr and an exit code.

    Errors are reported here rather than in ``main`` so that each command's exit code is
    the documented one (``main`` knows only 1 and 2).
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            with _sigterm_raises_interrupt():
                return handler(args)
        except CommandError as exc:
            _report(exc.message, exc.details)
            return exc.exit_code
        except LlamaSwitchError as exc:
            if isinstance(exc, ConfigValidationError) and len(exc.errors) > 1:
                _report("invalid configuration:", [f"  {p}: {r}" for p, r in exc.errors])
            else:
                _report(str(exc), ())
            return exit_code_for(exc)
        except KeyboardInterrupt:
            print("llamaswitch: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # `llamaswitch models --json | head`: the reader left; say nothing more, and
            # keep Python from complaining again when it flushes stdout at exit.
            _silence_stdout()
            return EXIT_FAILED

    return run


@contextmanager
def _sigterm_raises_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so that ``kill`` also stops what the command started
    (servers, benchmarks) through the same clean-up path, instead of leaving a benchmark
    recorded as running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is no real file (captured in tests): nothing will complain


def _report(message: str, details: Sequence[str]) -> None:
    print(f"llamaswitch: {message}", file=sys.stderr)
    for line in details:
        print(line, file=sys.stderr)


def usage_error(message: str) -> CommandError:
    """A :class:`CommandError` for a bad combination of options (exit code 2)."""
    return CommandError(message, EXIT_USAGE)
