"""How CLI commands reach llamaswitch: the library in this process, or a running service.

Every command drives one object through one interface: :class:`~llamaswitch.LlamaSwitch`
(the default, in this process; what it starts lives as long as the command) or
:class:`~llamaswitch.client.RemoteLlamaSwitch` (``--url URL`` or ``LLAMASWITCH_URL``: a
running ``llamaswitch serve``). They have the same methods and return the same types,
and the remote one raises the library's own exceptions, rebuilt from the service's
answer; so a command renders the same objects, and exits with the same code (each error
kind states its ``cli_exit_code``), whichever way it ran. The table of exit codes is in
docs/cli.md; the codes themselves are declared in :mod:`llamaswitch._errors`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from llamaswitch._cli._common import load_settings
from llamaswitch._cli._interrupts import sigterm_as_ctrl_c
from llamaswitch._errors import (
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_USAGE,
    ConfigValidationError,
    LlamaSwitchError,
    UnauthorizedError,
)
from llamaswitch._wire import dumps

if TYPE_CHECKING:
    from llamaswitch._sync import LlamaSwitch
    from llamaswitch.client import RemoteLlamaSwitch

__all__ = [
    "API",
    "CommandError",
    "add_backend_options",
    "guarded",
    "is_remote",
    "open_api",
    "print_json",
    "usage_error",
]

#: What a command drives: the library here, or a service over REST.
API: TypeAlias = "LlamaSwitch | RemoteLlamaSwitch"

URL_ENV = "LLAMASWITCH_URL"
API_KEY_ENV = "LLAMASWITCH_API_KEY"


class CommandError(Exception):
    """A command failed in a way only the command line knows (a bad combination of
    options); ``exit_code`` says how. ``details`` are extra lines printed under it."""

    def __init__(self, message: str, exit_code: int, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = list(details)


def usage_error(message: str) -> CommandError:
    """A :class:`CommandError` for a bad combination of options (exit code 2)."""
    return CommandError(message, EXIT_USAGE)


def print_json(value: Any) -> None:
    """Print any wire value for scripts: indented, UTF-8 kept (the REST ``data`` shapes)."""
    sys.stdout.write(dumps(value, indent=2).decode() + "\n")


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


def is_remote(api: API) -> bool:
    """Whether ``api`` is a service's (its servers outlive the command)."""
    from llamaswitch._sync import LlamaSwitch

    return not isinstance(api, LlamaSwitch)


def where(api: API) -> str:
    """Where commands run, for messages: ``in-process`` or the service's URL."""
    return "in-process" if not is_remote(api) else str(api.url)  # type: ignore[union-attr]


@contextmanager
def open_api(args: argparse.Namespace) -> Iterator[API]:
    """The object the options ask for; closing it stops what an in-process one started.

    In-process it opens lazily: ``models`` lists the folder without a supervisor and
    without touching the state folder.
    """
    url = getattr(args, "url", None)
    api: API
    if url:
        try:
            from llamaswitch.client import RemoteLlamaSwitch
        except ImportError as exc:
            raise CommandError(
                f"--url needs the client extra (missing: {exc.name}); install it with: "
                "pip install 'llamaswitch[client]'",
                EXIT_MISSING,
            ) from None
        key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None
        api = RemoteLlamaSwitch(url, api_key=key)
    else:
        from llamaswitch._sync import LlamaSwitch

        api = LlamaSwitch(load_settings(args), lazy=True)
    try:
        yield api
    finally:
        api.close()


def _details(exc: LlamaSwitchError, args: argparse.Namespace) -> tuple[str, list[str]]:
    if isinstance(exc, ConfigValidationError) and len(exc.errors) > 1:
        return "invalid configuration:", [f"  {path}: {reason}" for path, reason in exc.errors]
    if isinstance(exc, UnauthorizedError):
        hint = "wrong key?" if getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) \
            else f"set {API_KEY_ENV} or --api-key"  # fmt: skip
        return f"{exc} ({hint})", []
    return str(exc), []


def guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command handler, turning errors into a message on stderr and an exit code.

    A library error exits with its kind's ``cli_exit_code``; the same kind is raised
    in-process and (rebuilt) with ``--url``, so scripts see the same code either way.
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            with sigterm_as_ctrl_c():
                return handler(args)
        except CommandError as exc:
            _report(exc.message, exc.details)
            return exc.exit_code
        except LlamaSwitchError as exc:
            message, details = _details(exc, args)
            _report(message, details)
            return exc.cli_exit_code
        except KeyboardInterrupt:
            print("llamaswitch: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # `llamaswitch models --json | head`: the reader left; say nothing more, and
            # keep Python from complaining again when it flushes stdout at exit.
            _silence_stdout()
            return 1

    return run


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
