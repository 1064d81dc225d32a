"""A typed client for a running ``llamaswitch serve``: the library's API, over REST.

:class:`RemoteLlamaSwitch` and :class:`AsyncRemoteLlamaSwitch` have the same methods,
signatures and return types as :class:`~llamaswitch.LlamaSwitch` and
:class:`~llamaswitch.AsyncLlamaSwitch` (:data:`SHARED_METHODS`; a test compares them),
and raise the library's own exceptions, rebuilt from the error code of the envelope:
code written against the library runs against a service by changing one line.

>>> from llamaswitch.client import RemoteLlamaSwitch
>>> with RemoteLlamaSwitch("http://127.0.0.1:8080", api_key="...") as ls:  # doctest: +SKIP
...     status = ls.switch("tiny.gguf", ServerConfig(port=8091))
...     print(status.state, status.url)

One connection pool per client (httpx), the API key sent as a bearer token, a timeout
per request (none while a switch or start waits for a model to load). It needs the
``client`` extra: ``pip install 'llamaswitch[client]'``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Generic, Protocol, TypeVar, overload

import attrs
import httpx

from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import (
    ERROR_KINDS,
    BadResponseError,
    ConfigValidationError,
    InternalServiceError,
    LlamaSwitchError,
    RequestError,
    ServiceUnreachableError,
    TaskTimeoutError,
    TuneTimeoutError,
)
from llamaswitch._events import Event
from llamaswitch._time import format_time
from llamaswitch._wire import from_wire, to_wire
from llamaswitch.bench.comparison import Comparison
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.task import BenchTask
from llamaswitch.servers.config import ServerConfig
from llamaswitch.servers.status import ServerStatus
from llamaswitch.tuning.objective import Objective
from llamaswitch.tuning.tune import Tune

__all__ = ["DEFAULT_TIMEOUT_S", "SHARED_METHODS", "AsyncRemoteLlamaSwitch", "RemoteLlamaSwitch"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Plain requests answer in milliseconds; this only bounds a service that hangs.
DEFAULT_TIMEOUT_S: Final = 60.0
#: The methods the remote clients share with the library's objects (same signatures).
SHARED_METHODS: Final = (
    "list_models", "switch", "start", "stop", "status", "logs", "server_key",
    "submit_benchmark", "benchmark_status", "wait_benchmark", "cancel_benchmark",
    "delete_benchmark", "prune_benchmarks", "list_benchmarks", "compare_benchmarks",
    "import_benchmark", "tune", "tune_status", "wait_tune", "cancel_tune", "resume_tune",
    "list_tunes", "save_tune_preset", "tune_space",
)  # fmt: skip
_PREFIX: Final = "/api/v1"
# wait_benchmark polls: briskly first (tiny models finish in tens of ms), then calmly.
_POLL_FIRST_S: Final = 0.05
_POLL_MAX_S: Final = 0.5


@attrs.frozen
class _Call(Generic[T]):
    """One request and how to read its answer: what both clients send alike."""

    method: str
    path: str
    decode: Callable[[Any], T]
    query: Mapping[str, Any] = attrs.field(factory=dict)
    body: Any = None
    #: None: wait as long as the service takes (a switch waiting for a model to load).
    timeout_s: float | None = DEFAULT_TIMEOUT_S


class _Finishing(Protocol):
    @property
    def finished(self) -> bool: ...


F = TypeVar("F", bound=_Finishing)


async def _poll(fetch: Callable[[], Awaitable[F]], timeout_s: float | None) -> F:
    """Fetch until the record says it finished, or ``timeout_s`` passed (the last one
    fetched then, unfinished); the delay doubles from 50 ms to 0.5 s."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = _POLL_FIRST_S
    while True:
        record = await fetch()
        if record.finished or (deadline is not None and time.monotonic() >= deadline):
            return record
        await asyncio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_S)


def _poll_blocking(fetch: Callable[[], F], timeout_s: float | None) -> F:
    """:func:`_poll`, for the blocking client."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = _POLL_FIRST_S
    while True:
        record = fetch()
        if record.finished or (deadline is not None and time.monotonic() >= deadline):
            return record
        time.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_S)


def _list_of(cls: type[T]) -> Callable[[Any], list[T]]:
    return lambda data: [from_wire(item, cls) for item in data or []]


def _one(cls: type[T]) -> Callable[[Any], T]:
    return lambda data: from_wire(data, cls)


def _one_or_list(data: Any) -> ServerStatus | list[ServerStatus]:
    if isinstance(data, list):
        return [from_wire(item, ServerStatus) for item in data]
    return from_wire(data, ServerStatus)


def _query_value(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Requests:
    """The REST API as calls: one method per library method, shared by both clients."""

    def __init__(self, default_timeout_s: float) -> None:
        self.timeout_s = default_timeout_s

    def list_models(self) -> _Call[list[ModelInfo]]:
        return _Call("GET", "/models", _list_of(ModelInfo), timeout_s=self.timeout_s)

    def launch(self, route: str, model: str, config: ServerConfig | None,
               wait: bool, force: bool = False, *,
               host: str | None = None) -> _Call[ServerStatus]:  # fmt: skip
        query = {k: True for k, on in (("wait", wait), ("force", force)) if on}
        body = {"model_path": model, "config": None if config is None else to_wire(config)}
        if host is not None:
            body["host"] = host
        return _Call("POST", f"/model/{route}", _one(ServerStatus), query=query, body=body,
                     timeout_s=None if wait else self.timeout_s)  # fmt: skip

    def stop(self, model: str | None, port: int | None, force: bool,
             host: str | None = None) -> _Call[list[ServerStatus]]:  # fmt: skip
        body = {k: v for k, v in (("model_name", model), ("port", port), ("host", host))
                if v is not None}  # fmt: skip
        # Without force, a stop waits for the gateway's requests in flight to finish.
        return _Call("POST", "/model/stop", _list_of(ServerStatus), body=body,
                     query={"force": True} if force else {}, timeout_s=None)  # fmt: skip

    def status(self, model: str | None, port: int | None,
               host: str | None = None) -> _Call[Any]:  # fmt: skip
        query = {"model_name": model, "port": port, "host": host}
        return _Call("GET", "/model/status", _one_or_list, query=query, timeout_s=self.timeout_s)

    def logs(self, model: str | None, port: int | None, lines: int,
             host: str | None = None) -> _Call[list[str]]:  # fmt: skip
        return _Call("GET", "/model/logs", lambda data: [str(line) for line in data or []],
                     query={"model_name": model, "port": port, "lines": lines, "host": host},
                     timeout_s=self.timeout_s)  # fmt: skip

    def server_key(self, model: str | None, port: int | None,
                   host: str | None = None) -> _Call[str | None]:  # fmt: skip
        query = {"model_name": model, "port": port, "host": host}
        return _Call("GET", "/model/key", lambda data: data.get("api_key"), query=query,
                     timeout_s=self.timeout_s)  # fmt: skip

    def submit_benchmark(self, model: str, config: BenchConfig | None,
                         timeout_s: float | None, host: str | None = None,
                         ) -> _Call[str]:  # fmt: skip
        body: dict[str, Any] = {"model_path": model,
                                "config": None if config is None else to_wire(config)}  # fmt: skip
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if host is not None:
            body["host"] = host
        return _Call("POST", "/benchmark", lambda data: str(data["task_id"]), body=body,
                     timeout_s=self.timeout_s)  # fmt: skip

    def task(self, method: str, path: str, task_id: str) -> _Call[BenchTask]:
        return _Call(method, path, _one(BenchTask), query={"task_id": task_id},
                     timeout_s=self.timeout_s)  # fmt: skip

    def prune(self, before: datetime | None, model: str | None,
              state: str | None) -> _Call[list[str]]:  # fmt: skip
        body = {k: v for k, v in (("before", None if before is None else format_time(before)),
                                  ("model", model), ("state", state)) if v is not None}  # fmt: skip
        return _Call("POST", "/benchmarks/prune", lambda data: list(data["deleted"]),
                     body=body, timeout_s=self.timeout_s)  # fmt: skip

    def list_benchmarks(self, model: str | None, state: str | None, since: datetime | None,
                        until: datetime | None, limit: int) -> _Call[list[BenchTask]]:  # fmt: skip
        return _Call("GET", "/benchmarks", _list_of(BenchTask), query={
            "model": model, "state": state, "since": since, "until": until, "limit": limit,
        }, timeout_s=self.timeout_s)  # fmt: skip

    def compare(self, task_ids: Sequence[str]) -> _Call[Comparison]:
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        return _Call("GET", "/benchmarks/compare", _one(Comparison),
                     query={"task_ids": ",".join(ids)}, timeout_s=self.timeout_s)  # fmt: skip

    def import_benchmark(self, text: str, fmt: str, model: str | None) -> _Call[BenchTask]:
        body = {"text": text, "format": fmt, **({"model": model} if model is not None else {})}
        return _Call("POST", "/benchmarks/import", _one(BenchTask), body=body,
                     timeout_s=self.timeout_s)  # fmt: skip

    def tune(self, model: str, space: BenchConfig | Mapping[str, Any] | None,
             objective: Objective | str | Mapping[str, Any] | None,
             server: ServerConfig | Mapping[str, Any] | None,
             options: Mapping[str, Any]) -> _Call[Tune]:  # fmt: skip
        if "model_path" in options:  # the body's own key: it would name the model
            raise ConfigValidationError([("model_path", "unknown field (the model is the "
                                          "first argument)")])  # fmt: skip
        body = {**options, "model_path": model, "space": _data(space),
                "objective": _data(objective), "server": _data(server)}  # fmt: skip
        return _Call("POST", "/tune", _one(Tune), body=body, timeout_s=self.timeout_s)

    def tune_call(self, method: str, path: str, tune_id: str,
                  **query: Any) -> _Call[Tune]:  # fmt: skip
        return _Call(method, path, _one(Tune), query={"tune_id": tune_id, **query},
                     timeout_s=self.timeout_s)  # fmt: skip

    def list_tunes(self, model: str | None, limit: int) -> _Call[list[Tune]]:
        return _Call("GET", "/tunes", _list_of(Tune), query={"model": model, "limit": limit},
                     timeout_s=self.timeout_s)  # fmt: skip

    def tune_space(
        self, model: str, objective: Objective | str | Mapping[str, Any] | None
    ) -> _Call[dict[str, Any]]:
        # The route takes the one size the default space depends on: the prompt's.
        n_prompt = None if objective is None else Objective.coerce(objective).n_prompt
        return _Call("GET", "/tune/space", lambda data: dict(data or {}),
                     query={"model_path": model, "n_prompt": n_prompt},
                     timeout_s=self.timeout_s)  # fmt: skip

    def health(self) -> _Call[dict[str, Any]]:
        return _Call("GET", "/health", lambda data: dict(data or {}), timeout_s=self.timeout_s)


def _data(value: Any) -> Any:
    """A request part as JSON: typed values in the wire format, the rest as given."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    return to_wire(value)


def _base_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise RequestError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8080")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _params(query: Mapping[str, Any]) -> dict[str, str]:
    return {k: _query_value(v) for k, v in query.items() if v is not None}


def _answer(call: _Call[T], response: httpx.Response, base: str) -> T:
    """The envelope's data decoded, or the library error the envelope names."""
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or "success" not in envelope:
        snippet = response.content[:200].decode("utf-8", "replace").strip()
        raise BadResponseError(
            f"{call.method} {call.path} at {base}: HTTP {response.status_code}, not a "
            f"llamaswitch response: {snippet!r}"
        )
    if envelope.get("success") and response.status_code < 400:
        return call.decode(envelope.get("data"))
    raise _rebuild(response.status_code, envelope)


def _rebuild(status: int, envelope: Mapping[str, Any]) -> LlamaSwitchError:
    """The exception the service raised, from the envelope's code and details."""
    data = envelope.get("data")
    details: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    message = str(envelope.get("error") or envelope.get("message") or f"HTTP {status}")
    kind = ERROR_KINDS.get(str(details.get("code")))
    if kind is None:  # a newer service's kind: its family, by the status
        kind = RequestError if status < 500 else InternalServiceError
    return kind.from_details(message, details)


class AsyncRemoteLlamaSwitch:
    """:class:`~llamaswitch.AsyncLlamaSwitch`'s API, served by a ``llamaswitch serve``.

    Use it as ``async with AsyncRemoteLlamaSwitch(url) as ls:``; ``transport`` replaces
    httpx's (tests pass ``httpx.ASGITransport``-like ones, or a mock).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _base_url(url)
        self._calls = _Requests(timeout_s)
        self._http = httpx.AsyncClient(
            base_url=self.url + _PREFIX, headers=_headers(api_key), transport=transport
        )

    async def __aenter__(self) -> AsyncRemoteLlamaSwitch:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (servers keep running in the service)."""
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> T:
        logger.debug("%s %s %s", call.method, call.path, dict(call.query))
        try:
            response = await self._http.request(
                call.method, call.path, params=_params(call.query),
                json=call.body, timeout=call.timeout_s,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ServiceUnreachableError(f"cannot reach llamaswitch at {self.url}: {exc}") from exc
        return _answer(call, response, self.url)

    async def health(self) -> dict[str, Any]:
        """The service's health: its version and the llama.cpp binaries it found."""
        return await self._send(self._calls.health())

    async def list_models(self) -> list[ModelInfo]:
        """See :meth:`AsyncLlamaSwitch.list_models`."""
        return await self._send(self._calls.list_models())

    async def switch(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        force: bool = False,
        host: str | None = None,
    ) -> ServerStatus:
        """See :meth:`AsyncLlamaSwitch.switch`."""
        return await self._send(self._calls.launch("switch", model, config, wait, force, host=host))

    async def start(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        host: str | None = None,
    ) -> ServerStatus:
        """See :meth:`AsyncLlamaSwitch.start`."""
        return await self._send(self._calls.launch("start", model, config, wait, host=host))

    async def stop(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        force: bool = False,
        host: str | None = None,
    ) -> list[ServerStatus]:
        """See :meth:`AsyncLlamaSwitch.stop`."""
        return await self._send(self._calls.stop(model, port, force, host))

    @overload
    async def status(self, *, host: str | None = None) -> list[ServerStatus]: ...
    @overload
    async def status(
        self, model: str, *, port: int | None = None, host: str | None = None
    ) -> ServerStatus: ...
    @overload
    async def status(
        self, model: None = None, *, port: int, host: str | None = None
    ) -> ServerStatus: ...

    async def status(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> list[ServerStatus] | ServerStatus:
        """See :meth:`AsyncLlamaSwitch.status`."""
        result: list[ServerStatus] | ServerStatus = await self._send(
            self._calls.status(model, port, host)
        )
        return result

    async def logs(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        lines: int = 100,
        host: str | None = None,
    ) -> list[str]:
        """See :meth:`AsyncLlamaSwitch.logs`."""
        return await self._send(self._calls.logs(model, port, lines, host))

    async def server_key(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> str | None:
        """See :meth:`AsyncLlamaSwitch.server_key`."""
        return await self._send(self._calls.server_key(model, port, host))

    async def subscribe(self) -> AsyncIterator[Event]:
        """The service's events from now on (``async for event in ls.subscribe()``)."""
        async with self._http.stream("GET", "/events", timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _rebuild(response.status_code, response.json())
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind != "shutdown":
                    yield from_wire(json.loads(line.removeprefix("data: ")), Event)
                elif line.startswith("data: "):
                    return

    async def submit_benchmark(
        self,
        model: str,
        config: BenchConfig | None = None,
        *,
        timeout_s: float | None = None,
        host: str | None = None,
    ) -> str:
        """See :meth:`AsyncLlamaSwitch.submit_benchmark`."""
        return await self._send(self._calls.submit_benchmark(model, config, timeout_s, host))

    async def benchmark_status(self, task_id: str) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.benchmark_status`."""
        return await self._send(self._calls.task("GET", "/benchmark/status", task_id))

    async def wait_benchmark(self, task_id: str, timeout_s: float | None = None) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.wait_benchmark` (polls the task's status)."""
        task = await _poll(lambda: self.benchmark_status(task_id), timeout_s)
        if not task.finished:
            raise TaskTimeoutError(
                f"benchmark task {task_id} still {task.state} after {timeout_s:g} s"
            )
        return task

    async def cancel_benchmark(self, task_id: str) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.cancel_benchmark`."""
        return await self._send(self._calls.task("POST", "/benchmark/cancel", task_id))

    async def delete_benchmark(self, task_id: str) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.delete_benchmark`."""
        return await self._send(self._calls.task("DELETE", "/benchmark", task_id))

    async def prune_benchmarks(
        self,
        *,
        before: datetime | None = None,
        model: str | None = None,
        state: str | None = None,
    ) -> list[str]:
        """See :meth:`AsyncLlamaSwitch.prune_benchmarks`."""
        return await self._send(self._calls.prune(before, model, state))

    async def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[BenchTask]:
        """See :meth:`AsyncLlamaSwitch.list_benchmarks`."""
        return await self._send(self._calls.list_benchmarks(model, state, since, until, limit))

    async def compare_benchmarks(self, task_ids: Sequence[str]) -> Comparison:
        """See :meth:`AsyncLlamaSwitch.compare_benchmarks`."""
        return await self._send(self._calls.compare(task_ids))

    async def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> BenchTask:
        """See :meth:`AsyncLlamaSwitch.import_benchmark`."""
        return await self._send(self._calls.import_benchmark(text, fmt, model))

    async def tune(
        self,
        model: str,
        *,
        space: BenchConfig | Mapping[str, Any] | None = None,
        objective: Objective | str | Mapping[str, Any] | None = None,
        server: ServerConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Tune:
        """See :meth:`AsyncLlamaSwitch.tune`."""
        return await self._send(self._calls.tune(model, space, objective, server, options))

    async def tune_status(self, tune_id: str) -> Tune:
        """See :meth:`AsyncLlamaSwitch.tune_status`."""
        return await self._send(self._calls.tune_call("GET", "/tune/status", tune_id))

    async def wait_tune(self, tune_id: str, timeout_s: float | None = None) -> Tune:
        """See :meth:`AsyncLlamaSwitch.wait_tune` (polls the tune's status)."""
        tune = await _poll(lambda: self.tune_status(tune_id), timeout_s)
        if not tune.finished:
            raise TuneTimeoutError(f"tune {tune_id} still running after {timeout_s:g} s")
        return tune

    async def cancel_tune(self, tune_id: str) -> Tune:
        """See :meth:`AsyncLlamaSwitch.cancel_tune`."""
        return await self._send(self._calls.tune_call("POST", "/tune/cancel", tune_id))

    async def resume_tune(self, tune_id: str, *, budget: int | None = None) -> Tune:
        """See :meth:`AsyncLlamaSwitch.resume_tune`."""
        call = self._calls.tune_call("POST", "/tune/resume", tune_id, budget=budget)
        return await self._send(call)

    async def list_tunes(self, *, model: str | None = None, limit: int = 50) -> list[Tune]:
        """See :meth:`AsyncLlamaSwitch.list_tunes`."""
        return await self._send(self._calls.list_tunes(model, limit))

    async def save_tune_preset(
        self, tune_id: str, *, trial: int | None = None, preset: str | None = None
    ) -> Tune:
        """See :meth:`AsyncLlamaSwitch.save_tune_preset`."""
        call = self._calls.tune_call("POST", "/tune/preset", tune_id, trial=trial, preset=preset)
        return await self._send(call)

    async def tune_space(
        self, model: str, *, objective: Objective | str | Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """See :meth:`AsyncLlamaSwitch.tune_space`."""
        return await self._send(self._calls.tune_space(model, objective))


class RemoteLlamaSwitch:
    """:class:`~llamaswitch.LlamaSwitch`'s API, served by a ``llamaswitch serve``.

    Use it as ``with RemoteLlamaSwitch(url) as ls:``.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _base_url(url)
        self._calls = _Requests(timeout_s)
        self._http = httpx.Client(
            base_url=self.url + _PREFIX, headers=_headers(api_key), transport=transport
        )

    def __enter__(self) -> RemoteLlamaSwitch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """Close the connection pool (servers keep running in the service)."""
        self._http.close()

    def _send(self, call: _Call[T]) -> T:
        logger.debug("%s %s %s", call.method, call.path, dict(call.query))
        try:
            response = self._http.request(
                call.method, call.path, params=_params(call.query),
                json=call.body, timeout=call.timeout_s,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ServiceUnreachableError(f"cannot reach llamaswitch at {self.url}: {exc}") from exc
        return _answer(call, response, self.url)

    def health(self) -> dict[str, Any]:
        """The service's health: its version and the llama.cpp binaries it found."""
        return self._send(self._calls.health())

    def list_models(self) -> list[ModelInfo]:
        """See :meth:`LlamaSwitch.list_models`."""
        return self._send(self._calls.list_models())

    def switch(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        force: bool = False,
        host: str | None = None,
    ) -> ServerStatus:
        """See :meth:`LlamaSwitch.switch`."""
        return self._send(self._calls.launch("switch", model, config, wait, force, host=host))

    def start(
        self,
        model: str,
        config: ServerConfig | None = None,
        *,
        wait: bool = True,
        host: str | None = None,
    ) -> ServerStatus:
        """See :meth:`LlamaSwitch.start`."""
        return self._send(self._calls.launch("start", model, config, wait, host=host))

    def stop(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        force: bool = False,
        host: str | None = None,
    ) -> list[ServerStatus]:
        """See :meth:`LlamaSwitch.stop`."""
        return self._send(self._calls.stop(model, port, force, host))

    @overload
    def status(self, *, host: str | None = None) -> list[ServerStatus]: ...
    @overload
    def status(
        self, model: str, *, port: int | None = None, host: str | None = None
    ) -> ServerStatus: ...
    @overload
    def status(self, model: None = None, *, port: int, host: str | None = None) -> ServerStatus: ...

    def status(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> list[ServerStatus] | ServerStatus:
        """See :meth:`LlamaSwitch.status`."""
        result: list[ServerStatus] | ServerStatus = self._send(
            self._calls.status(model, port, host)
        )
        return result

    def logs(
        self,
        model: str | None = None,
        *,
        port: int | None = None,
        lines: int = 100,
        host: str | None = None,
    ) -> list[str]:
        """See :meth:`LlamaSwitch.logs`."""
        return self._send(self._calls.logs(model, port, lines, host))

    def server_key(
        self, model: str | None = None, *, port: int | None = None, host: str | None = None
    ) -> str | None:
        """See :meth:`LlamaSwitch.server_key`."""
        return self._send(self._calls.server_key(model, port, host))

    def submit_benchmark(
        self,
        model: str,
        config: BenchConfig | None = None,
        *,
        timeout_s: float | None = None,
        host: str | None = None,
    ) -> str:
        """See :meth:`LlamaSwitch.submit_benchmark`."""
        return self._send(self._calls.submit_benchmark(model, config, timeout_s, host))

    def benchmark_status(self, task_id: str) -> BenchTask:
        """See :meth:`LlamaSwitch.benchmark_status`."""
        return self._send(self._calls.task("GET", "/benchmark/status", task_id))

    def wait_benchmark(self, task_id: str, timeout_s: float | None = None) -> BenchTask:
        """See :meth:`LlamaSwitch.wait_benchmark` (polls the task's status)."""
        task = _poll_blocking(lambda: self.benchmark_status(task_id), timeout_s)
        if not task.finished:
            raise TaskTimeoutError(
                f"benchmark task {task_id} still {task.state} after {timeout_s:g} s"
            )
        return task

    def cancel_benchmark(self, task_id: str) -> BenchTask:
        """See :meth:`LlamaSwitch.cancel_benchmark`."""
        return self._send(self._calls.task("POST", "/benchmark/cancel", task_id))

    def delete_benchmark(self, task_id: str) -> BenchTask:
        """See :meth:`LlamaSwitch.delete_benchmark`."""
        return self._send(self._calls.task("DELETE", "/benchmark", task_id))

    def prune_benchmarks(
        self,
        *,
        before: datetime | None = None,
        model: str | None = None,
        state: str | None = None,
    ) -> list[str]:
        """See :meth:`LlamaSwitch.prune_benchmarks`."""
        return self._send(self._calls.prune(before, model, state))

    def list_benchmarks(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[BenchTask]:
        """See :meth:`LlamaSwitch.list_benchmarks`."""
        return self._send(self._calls.list_benchmarks(model, state, since, until, limit))

    def compare_benchmarks(self, task_ids: Sequence[str]) -> Comparison:
        """See :meth:`LlamaSwitch.compare_benchmarks`."""
        return self._send(self._calls.compare(task_ids))

    def import_benchmark(
        self, text: str, fmt: str = "json", *, model: str | None = None
    ) -> BenchTask:
        """See :meth:`LlamaSwitch.import_benchmark`."""
        return self._send(self._calls.import_benchmark(text, fmt, model))

    def tune(
        self,
        model: str,
        *,
        space: BenchConfig | Mapping[str, Any] | None = None,
        objective: Objective | str | Mapping[str, Any] | None = None,
        server: ServerConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Tune:
        """See :meth:`LlamaSwitch.tune`."""
        return self._send(self._calls.tune(model, space, objective, server, options))

    def tune_status(self, tune_id: str) -> Tune:
        """See :meth:`LlamaSwitch.tune_status`."""
        return self._send(self._calls.tune_call("GET", "/tune/status", tune_id))

    def wait_tune(self, tune_id: str, timeout_s: float | None = None) -> Tune:
        """See :meth:`LlamaSwitch.wait_tune` (polls the tune's status)."""
        tune = _poll_blocking(lambda: self.tune_status(tune_id), timeout_s)
        if not tune.finished:
            raise TuneTimeoutError(f"tune {tune_id} still running after {timeout_s:g} s")
        return tune

    def cancel_tune(self, tune_id: str) -> Tune:
        """See :meth:`LlamaSwitch.cancel_tune`."""
        return self._send(self._calls.tune_call("POST", "/tune/cancel", tune_id))

    def resume_tune(self, tune_id: str, *, budget: int | None = None) -> Tune:
        """See :meth:`LlamaSwitch.resume_tune`."""
        call = self._calls.tune_call("POST", "/tune/resume", tune_id, budget=budget)
        return self._send(call)

    def list_tunes(self, *, model: str | None = None, limit: int = 50) -> list[Tune]:
        """See :meth:`LlamaSwitch.list_tunes`."""
        return self._send(self._calls.list_tunes(model, limit))

    def save_tune_preset(
        self, tune_id: str, *, trial: int | None = None, preset: str | None = None
    ) -> Tune:
        """See :meth:`LlamaSwitch.save_tune_preset`."""
        call = self._calls.tune_call("POST", "/tune/preset", tune_id, trial=trial, preset=preset)
        return self._send(call)

    def tune_space(
        self, model: str, *, objective: Objective | str | Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """See :meth:`LlamaSwitch.tune_space`."""
        return self._send(self._calls.tune_space(model, objective))
