"""Error kinds are declared once: the REST envelope, the remote client and the CLI agree.

Every kind in ``ERROR_KINDS`` is rendered by the HTTP adapter (``error_response``) and
read back by the remote client through its real path (an httpx transport answering with
that response): the client raises the same class, with the same code, exit code and
structured details. The CLI's exit codes for real failures against a real
``llamaswitch serve`` are in ``tests/test_cli.py``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

import llamaswitch
import llamaswitch_http
from llamaswitch import _errors as errors
from llamaswitch._errors import ERROR_KINDS, LlamaSwitchError
from llamaswitch.client import RemoteLlamaSwitch
from llamaswitch_http._errors import error_response


def _value(name: str, hint: Any) -> Any:
    """A plausible argument of type ``hint`` for the parameter ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return _value(name, next(a for a in args if a is not type(None)))
    if origin is not None and issubclass(origin, Sequence) and origin is not str:
        item = args[0] if args else str
        if typing.get_origin(item) is tuple:  # (path, reason) pairs
            return [(f"config.{name}", "must be a whole number, got 'x'"),
                    (f"config.{name}_2", "unknown field")]  # fmt: skip
        return [_value(f"{name}-1", item), _value(f"{name}-2", item)]
    if hint is bool:
        return True
    if hint is int:
        return 8091
    if hint is float:
        return 1.5
    return f"{name} value"


def sample(kind: type[LlamaSwitchError]) -> LlamaSwitchError:
    """A real instance of ``kind``, built through its own constructor with every
    parameter given (so that every structured attribute has a value to carry)."""
    owner = next(c for c in kind.__mro__ if "__init__" in vars(c))
    if not issubclass(owner, LlamaSwitchError):  # Exception's (or ValueError's): a message
        return kind(f"a {kind.code} happened")
    init = owner.__init__
    hints = typing.get_type_hints(init, vars(errors))
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for name, parameter in inspect.signature(init).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = _value(name, hints.get(name, str))
        if parameter.kind is parameter.KEYWORD_ONLY:
            keywords[name] = value
        else:
            positional.append(value)
    return kind(*positional, **keywords)


def rendered(exc: LlamaSwitchError) -> tuple[int, dict[str, Any]]:
    """What the REST adapter answers for ``exc``: status and envelope."""
    response = error_response(exc)
    assert isinstance(response.body, bytes)
    return response.status, json.loads(response.body)


def rebuilt(exc: LlamaSwitchError) -> LlamaSwitchError:
    """``exc`` sent through the adapter and raised again by the remote client."""
    response = error_response(exc)
    assert isinstance(response.body, bytes)
    body, status = response.body, response.status

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    transport = httpx.MockTransport(answer)
    with (
        RemoteLlamaSwitch("http://llamaswitch.test", transport=transport) as ls,
        pytest.raises(LlamaSwitchError) as caught,
    ):
        ls.list_models()
    return caught.value


KINDS = sorted(ERROR_KINDS.items())


@pytest.mark.parametrize(("code", "kind"), KINDS, ids=[code for code, _ in KINDS])
def test_the_client_rebuilds_every_kind_the_service_renders(
    code: str, kind: type[LlamaSwitchError]
) -> None:
    original = sample(kind)
    again = rebuilt(original)
    assert type(again) is kind
    assert (again.code, again.http_status, again.cli_exit_code) == (
        code, kind.http_status, kind.cli_exit_code,
    )  # fmt: skip
    assert again.details() == original.details()


@pytest.mark.parametrize(("code", "kind"), KINDS, ids=[code for code, _ in KINDS])
def test_the_envelope_carries_the_kinds_status_code_and_title(
    code: str, kind: type[LlamaSwitchError]
) -> None:
    exc = sample(kind)
    status, body = rendered(exc)
    assert status == kind.http_status
    assert body["success"] is False
    assert body["message"] == kind.title
    assert body["data"]["code"] == code
    assert body["error"]


def test_every_422_names_its_problems_in_data_errors() -> None:
    """docs/rest.md: every 422 has ``data.errors``, a list (the seed's clients read it)."""
    for kind in ERROR_KINDS.values():
        if kind.http_status != 422:
            continue
        exc = sample(kind)
        _, body = rendered(exc)
        found = body["data"].get("errors")
        assert isinstance(found, list), (kind.__name__, body)
        assert found
        assert all(e for e in found)


def test_a_validation_error_comes_back_with_its_field_paths() -> None:
    again = rebuilt(errors.ConfigValidationError([
        ("config.threads", "must be a whole number from 1 to 4096, got 0"),
        ("config.cache_type_k", "must be one of f16, q8_0, got 'f8'"),
    ]))  # fmt: skip
    assert isinstance(again, errors.ConfigValidationError)
    assert [path for path, _ in again.errors] == ["$.config.threads", "$.config.cache_type_k"]
    assert "must be a whole number from 1 to 4096, got 0 @ $.config.threads" in str(again)


def test_structured_attributes_come_back_typed() -> None:
    port = rebuilt(errors.PortInUseError(8091, "127.0.0.1", "sshd (pid 42)"))
    assert isinstance(port, errors.PortInUseError)
    assert (port.port, port.host, port.holder) == (8091, "127.0.0.1", "sshd (pid 42)")
    start = rebuilt(errors.ServerStartError(
        "llama-server exited with code 1", exit_code=1,
        log_tail=["error: unknown argument: --bogus", "usage: llama-server"],
    ))  # fmt: skip
    assert isinstance(start, errors.ServerStartError)
    assert start.log_tail == ["error: unknown argument: --bogus", "usage: llama-server"]
    assert start.exit_code == 1
    missing = rebuilt(errors.ModelNotFoundError("tiny2.gguf", ["tiny.gguf", "tiny-chat.gguf"]))
    assert isinstance(missing, errors.ModelNotFoundError)
    assert missing.suggestions == ["tiny.gguf", "tiny-chat.gguf"]


def test_an_unknown_code_from_a_newer_service_keeps_its_family() -> None:
    def answer(status: int) -> Callable[[httpx.Request], httpx.Response]:
        body = {"success": False, "message": "New", "data": {"code": "brand_new"},
                "error": "something new went wrong"}  # fmt: skip
        return lambda request: httpx.Response(status, json=body)

    for status, family in ((409, errors.RequestError), (507, errors.InternalServiceError)):
        transport = httpx.MockTransport(answer(status))
        with (
            RemoteLlamaSwitch("http://llamaswitch.test", transport=transport) as ls,
            pytest.raises(family, match="something new went wrong"),
        ):
            ls.list_models()


def test_a_bare_library_error_is_answered_as_a_bug_with_a_trace_id() -> None:
    """The middleware never shows a bare LlamaSwitchError as such: it is a 500 whose trace
    id matches the log line (error_response itself renders whatever it is given)."""
    import asyncio

    from aiohttp.test_utils import make_mocked_request

    from llamaswitch_http._errors import error_middleware

    async def failing(request: Any) -> Any:
        raise LlamaSwitchError("nobody foresaw this")

    request = make_mocked_request("GET", "/api/v1/models")
    response = asyncio.run(error_middleware(request, failing))
    body = json.loads(response.body)  # type: ignore[attr-defined]
    assert response.status == 500
    assert body["data"]["code"] == "internal_error"
    assert body["data"]["trace_id"] == response.headers["X-Trace-Id"]


def _all_modules() -> list[str]:
    names = []
    for package in (llamaswitch, llamaswitch_http):
        prefix = f"{package.__name__}."
        names += [info.name for info in pkgutil.walk_packages(package.__path__, prefix)]
    return names


def test_every_kind_is_declared_in_the_errors_module() -> None:
    """The client rebuilds only kinds it knows, and it imports ``_errors``: a kind declared
    elsewhere would come back as its family, and would be missing from the docs."""
    for name in _all_modules():
        if name.endswith("__main__"):
            continue
        importlib.import_module(name)
    strays = {code: kind.__module__ for code, kind in ERROR_KINDS.items()
              if kind.__module__ != errors.__name__}  # fmt: skip
    assert strays == {}


def test_every_public_error_class_is_a_kind_of_its_own() -> None:
    public = [getattr(errors, name) for name in errors.__all__]
    classes = [c for c in public if isinstance(c, type) and issubclass(c, LlamaSwitchError)]
    assert len(classes) > 40
    for cls in classes:
        assert ERROR_KINDS[cls.code] is cls, cls.__name__
        assert cls.__doc__, cls.__name__
