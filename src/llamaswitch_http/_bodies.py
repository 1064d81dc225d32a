"""Parsing what clients send: JSON bodies and query parameters, strictly.

Bodies are structured into small attrs classes by one strict ``cattrs`` converter: unknown
top-level keys are refused by name, types are not coerced (``"4"`` is not an int, ``true``
is not an int), and every problem is reported at once as ``reason @ $.path`` (the
``cattrs.transform_error`` style). The ``config`` objects inside are left to the library's
``ServerConfig.from_dict`` / ``BenchConfig.from_dict``, which are strict the same way.
"""

from __future__ import annotations

import asyncio
import json
import re
import types
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.v import transform_error

from llamaswitch._errors import (
    AmbiguousBodyError,
    ConfigValidationError,
    MalformedBodyError,
    RequestError,
    RequestTimeoutError,
    RequestTooLargeError,
    UnsupportedMediaTypeError,
)
from llamaswitch._text import text_problem
from llamaswitch._vocabulary import MODEL_PORT
from llamaswitch.bench.config import BENCH_OUTPUT_FORMATS, BenchConfig
from llamaswitch.bench.task import FINAL_STATES
from llamaswitch.servers.config import ServerConfig
from llamaswitch_http._errors import error_response, openai_error_response, speaks_openai

__all__ = [
    "BODY_TIMEOUT_S",
    "GATEWAY_MAX_BODY_BYTES",
    "BenchmarkBody",
    "ImportBody",
    "PruneBody",
    "Query",
    "StopBody",
    "SwitchBody",
    "body_limits_middleware",
    "parse_config",
    "parse_moment",
    "read_body",
]

T = TypeVar("T")


_MODEL_REF: Final = {"type": "string", "minLength": 1,
                     "description": "File name, path relative to the models folder, or "
                     "catalog name."}  # fmt: skip


#: A cluster host, by its name in ``GET /api/v1/hosts`` (docs/cluster.md).
_HOST: Final[Mapping[str, Any]] = {
    "type": "string", "minLength": 1,
    "description": "A cluster host (GET /api/v1/hosts); default: this machine.",
}  # fmt: skip


@attrs.frozen(kw_only=True)
class SwitchBody:
    """``POST /api/v1/model/switch`` (and ``start``)."""

    model_path: str = attrs.field(metadata={"schema": _MODEL_REF})
    config: dict[str, Any] | None = attrs.field(default=None, metadata={"schema": ServerConfig})
    host: str | None = attrs.field(default=None, metadata={"schema": _HOST})


@attrs.frozen(kw_only=True)
class StopBody:
    """``POST /api/v1/model/stop``: one of model_name and port, or neither: every server."""

    model_name: str | None = attrs.field(default=None, metadata={"schema": {
        "type": "string", "minLength": 1}})  # fmt: skip
    port: int | None = attrs.field(default=None, metadata={"schema": MODEL_PORT.schema()})
    host: str | None = attrs.field(default=None, metadata={"schema": _HOST})


@attrs.frozen(kw_only=True)
class BenchmarkBody:
    """``POST /api/v1/benchmark``."""

    model_path: str = attrs.field(metadata={"schema": _MODEL_REF})
    config: dict[str, Any] | None = attrs.field(default=None, metadata={"schema": BenchConfig})
    timeout_s: float | None = attrs.field(default=None, metadata={"schema": {
        "type": "number", "exclusiveMinimum": 0,
        "description": "Time limit of the task (default: LLAMASWITCH_BENCH_TIMEOUT_S)."}},
    )  # fmt: skip
    host: str | None = attrs.field(default=None, metadata={"schema": {
        **_HOST, "description": "A cluster host (GET /api/v1/hosts), or * for every host "
        "that has the model (the answer is then a list of tasks)."}})  # fmt: skip


@attrs.frozen(kw_only=True)
class ImportBody:
    """``POST /api/v1/benchmarks/import``: llama-bench output made elsewhere."""

    text: str = attrs.field(metadata={"schema": {
        "type": "string", "description": "llama-bench output, verbatim."}})  # fmt: skip
    format: str = attrs.field(default="json", metadata={"schema": {
        "enum": list(BENCH_OUTPUT_FORMATS), "default": "json"}})  # fmt: skip
    model: str | None = attrs.field(default=None, metadata={"schema": {
        "type": "string", "description": "The model's name (needed for md output)."}})  # fmt: skip


@attrs.frozen(kw_only=True)
class PruneBody:
    """``POST /api/v1/benchmarks/prune``: which finished tasks to delete (all must match)."""

    before: str | None = attrs.field(default=None, metadata={"schema": {
        "type": "string", "minLength": 1,
        "description": "ISO 8601: tasks created before this time."}})  # fmt: skip
    model: str | None = attrs.field(default=None, metadata={"schema": {
        "type": "string", "minLength": 1, "description": "Model name or path."}})  # fmt: skip
    state: str | None = attrs.field(default=None, metadata={"schema": {
        "enum": sorted(FINAL_STATES)}})  # fmt: skip


_TYPE_NAMES: Final[Mapping[object, str]] = {
    str: "str", int: "int", float: "float", bool: "bool", dict: "object", type(None): "null",
}  # fmt: skip


def _type_name(tp: object) -> str:
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(tp))
    origin = get_origin(tp) or tp
    return _TYPE_NAMES.get(origin, getattr(origin, "__name__", repr(origin)))


def _format(exc: BaseException, tp: type | None) -> str:
    """cattrs' wording, with JSON-friendly type names (``object or null``)."""
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"extra fields found ({', '.join(sorted(exc.extra_fields))})"
    if isinstance(exc, ValueError | TypeError) and tp is not None:
        return f"invalid value for type, expected {_type_name(tp)}"
    return f"invalid value ({exc})"


def _strict(kind: type[T], *, also: tuple[type, ...] = ()) -> Callable[[object, type], T]:
    accepted = (kind, *also)

    def hook(value: object, _: type) -> T:
        # bool is an int subclass in Python, not in JSON.
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}")
        return kind(value)  # type: ignore[call-arg]

    return hook


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict


def _object(value: object, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_converter.register_structure_hook(str, _strict(str))
_converter.register_structure_hook(int, _strict(int))
_converter.register_structure_hook(float, _strict(float, also=(int,)))
_converter.register_structure_hook(bool, _strict(bool))
_converter.register_structure_hook_func(_is_dict, _object)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKeyError(ValueError):
    """A JSON object names one key twice (``json`` would keep the last silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


# A "\uD800"-"\uDFFF" escape: only a body holding one can decode to a lone surrogate (a
# pair decodes to one character), so only such bodies are walked.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_MAX_TEXT_PROBLEMS: Final = 20


def _text_problems(value: object, path: str, out: list[tuple[str, str]]) -> None:
    """Every string (keys included) that is not valid Unicode, as ``(path, reason)``."""
    if len(out) >= _MAX_TEXT_PROBLEMS:
        return
    if isinstance(value, str):
        reason = text_problem(value, nul=False)
        if reason is not None:
            out.append((path, reason))
    elif isinstance(value, dict):
        for key, item in value.items():
            reason = text_problem(key, nul=False)
            if reason is not None:
                out.append((path, f"a key {reason.removeprefix('must be ')!s}"))
                continue
            _text_problems(item, f"{path}.{key}", out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _text_problems(item, f"{path}[{index}]", out)


#: Largest body a gateway route takes: images travel base64 inside chat requests.
GATEWAY_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
#: Seconds a client has to send a request body once its headers are in. A slow client
#: (or a slowloris attack) otherwise holds a connection and its file descriptor forever.
BODY_TIMEOUT_S: Final = 30.0


def body_limits_middleware(
    *, max_bytes: int, timeout_s: float = BODY_TIMEOUT_S, gateway_max_bytes: int | None = None
) -> Middleware:
    """Refuse a body that announces more than ``max_bytes`` before reading any of it (413),
    and read every body within ``timeout_s`` (408, and the connection is closed). The
    gateway's routes take up to ``gateway_max_bytes`` (default: ``max_bytes``).

    It runs after the key check, so an unauthenticated client cannot make the service
    read anything. Handlers then get the body from aiohttp's cache at no cost.
    """

    @web.middleware
    async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = max_bytes
        length = request.content_length
        if gateway_max_bytes is not None and speaks_openai(request):
            limit = gateway_max_bytes
            # A clone only where the app's own limit would refuse the body (a clone is
            # some 20 µs of each request).
            if length is None or length > max_bytes:
                request = request.clone(client_max_size=limit)
        if length is not None and length > limit:
            error = RequestTooLargeError(
                f"the body announces {length} bytes; at most {limit} are accepted"
            )
            return await _answer_and_close(request, error)
        if request.content.is_eof():
            await request.read()  # all there, nothing to wait for: no timer to set
        elif request.body_exists:
            try:
                async with asyncio.timeout(timeout_s):
                    await request.read()
            except TimeoutError:
                return await _answer_and_close(request, RequestTimeoutError(
                    f"the request body did not arrive within {timeout_s:g} s"))  # fmt: skip
        return await handler(request)

    return limits


async def _answer_and_close(request: web.Request, error: RequestError) -> web.StreamResponse:
    """Send an error envelope and drop the connection: aiohttp would otherwise wait
    (lingering, 10 s) for the rest of a body that is not coming or not wanted."""
    if speaks_openai(request):
        response = openai_error_response(request, error)
    else:
        response = error_response(error)
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


async def read_json(request: web.Request) -> object:
    """The request body as JSON; ``None`` when there is none. 400 when malformed.

    A body must be sent as ``application/json`` (415 otherwise), as the seed's curl lines
    do. This is a security measure, not pedantry: a web page can POST ``text/plain`` or
    a form to ``http://127.0.0.1:8080`` without asking, but a JSON POST needs a CORS
    preflight that this service never grants.
    """
    raw = await request.read()  # enforces the app's client_max_size (413)
    if not raw:
        return None
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"send the body as JSON with Content-Type: application/json (got {ctype!r})"
        )
    try:
        value = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as exc:
        raise AmbiguousBodyError(f"the request body is ambiguous: {exc}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: arrays nested thousands deep, which the parser refuses that way.
        why = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise MalformedBodyError(f"the request body is not valid JSON: {why}") from None
    if _SURROGATE_ESCAPE.search(raw):
        problems: list[tuple[str, str]] = []
        _text_problems(value, "$", problems)
        if problems:
            raise ConfigValidationError(problems)
    return value


async def read_body(request: web.Request, cls: type[T], *, optional: bool = False) -> T:
    """Parse the JSON body into ``cls``; 400 if it is not JSON, 422 if it does not fit.

    With ``optional``, a missing body (or ``null``) means every field at its default.
    """
    value = await read_json(request)
    if value is None and optional:
        value = {}
    if not isinstance(value, dict):
        kind = "nothing" if value is None else _type_name(type(value))
        raise ConfigValidationError([("$", f"invalid value for type, expected object, got {kind}")])
    try:
        return _converter.structure(value, cls)
    except Exception as exc:  # cattrs raises a tree of mixed exception types
        problems = [line.rsplit(" @ ", 1) for line in transform_error(exc, "$", _format)]
        raise ConfigValidationError([(path, reason) for reason, path in problems]) from None


_INTEGER: Final = re.compile(r"-?[0-9]+")


class Query:
    """Typed access to query parameters, collecting every problem before raising 422.

    Read every parameter the route takes, then call :meth:`check`.

    >>> # q = Query(request); lines = q.integer("lines", 100, minimum=1); q.check()
    """

    def __init__(self, request: web.Request) -> None:
        self._query = request.query
        self._known: set[str] = set()
        self.errors: list[tuple[str, str]] = []

    def _raw(self, name: str) -> str | None:
        self._known.add(name)
        given = self._query.getall(name, ())
        if len(given) > 1:
            # Which one would count is a guess a strict API does not make.
            self.errors.append((f"$.query.{name}", f"given {len(given)} times; give it once"))
            return None
        value = given[0] if given else None
        if value is not None and not value.strip():
            self.errors.append((f"$.query.{name}", "must not be empty"))
            return None
        return value

    def given(self, name: str) -> bool:
        """Whether the request names the parameter at all."""
        return name in self._query

    def text(self, name: str, *, required: bool = False) -> str | None:
        """A text parameter."""
        value = self._raw(name)
        if value is None and required and name not in self._query:
            self.errors.append((f"$.query.{name}", "required query parameter missing"))
        return value

    def integer(
        self, name: str, default: int | None = None, *, minimum: int, maximum: int
    ) -> int | None:
        """A whole number within ``[minimum, maximum]``."""
        value = self._raw(name)
        if value is None:
            return default
        # Plain ASCII digits only: int() would also take "1_000", " 7" and other scripts'
        # digits, which the OpenAPI document (and so its clients) call invalid.
        if not _INTEGER.fullmatch(value):
            self.errors.append((f"$.query.{name}", "invalid value for type, expected int"))
            return default
        number = int(value)
        if not minimum <= number <= maximum:
            self.errors.append((f"$.query.{name}", f"must be between {minimum} and {maximum}"))
            return default
        return number

    def flag(self, name: str, default: bool = False) -> bool:
        """``true`` or ``false``, as OpenAPI serialises a boolean query parameter."""
        value = self._raw(name)
        if value is None:
            return default
        if value not in ("true", "false"):
            self.errors.append(
                (f"$.query.{name}", "invalid value for type, expected bool (true or false)")
            )
            return default
        return value == "true"

    def moment(self, name: str) -> datetime | None:
        """An ISO 8601 date or date-time; without a zone it is taken as UTC."""
        value = self._raw(name)
        if value is None:
            return None
        moment = parse_moment(value)
        if moment is None:
            self.errors.append(
                (f"$.query.{name}", "invalid value for type, expected an ISO 8601 date-time")
            )
        return moment

    def choice(self, name: str, allowed: tuple[str, ...]) -> str | None:
        """One of ``allowed``."""
        value = self._raw(name)
        if value is not None and value not in allowed:
            self.errors.append((f"$.query.{name}", f"must be one of {', '.join(allowed)}"))
            return None
        return value

    def check(self) -> None:
        """Raise the 422 listing every problem met so far, unknown parameters included
        (a misspelt ``model_nmae`` would otherwise silently mean "all")."""
        for name in self._query:
            if name not in self._known:
                self.errors.append((f"$.query.{name}", "unknown query parameter"))
                self._known.add(name)
        if self.errors:
            raise ConfigValidationError(self.errors)


def parse_moment(text: str) -> datetime | None:
    """An ISO 8601 date or date-time as UTC (without a zone it is taken as UTC); None if
    it is none."""
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        # Converted here so that a date at the edge of the calendar (0001-01-01+05:00)
        # is refused now rather than overflowing later in the store.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_config(build: Callable[[dict[str, Any]], T], data: dict[str, Any] | None) -> T:
    """Build a ServerConfig or BenchConfig from a body's ``config``; its error paths are
    re-rooted at ``$.config`` (where the client wrote them)."""
    try:
        return build(data or {})
    except ConfigValidationError as exc:
        raise ConfigValidationError(
            [(f"$.config.{path}" if not path.startswith("[") else f"$.config{path}", reason)
             for path, reason in exc.errors]
        ) from None  # fmt: skip
