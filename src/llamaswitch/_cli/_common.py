"""What every command shares: exit codes, settings with CLI overrides, argparse types.

The exit codes are declared with the error kinds (:mod:`llamaswitch._errors`); the
argparse types are the field vocabulary's kinds, so ``--port 22`` is refused with the
same rule (and words) as a config's ``port``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from llamaswitch._errors import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from llamaswitch._settings import Settings
from llamaswitch._vocabulary import MODEL_PORT, TCP_PORT, Kind, Number, Whole

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "api_port",
    "kind_type",
    "load_settings",
    "port_number",
    "positive_int",
    "positive_seconds",
]


def load_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from the environment and ``.env``, with global CLI options on top."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    for field in ("models_dir", "state_dir"):
        value = getattr(args, field, None)
        if value is not None:
            explicit[field] = value
    return Settings.from_env(**explicit)


def kind_type(kind: Kind) -> Callable[[str], Any]:
    """An argparse type that reads and checks a value as ``kind`` does."""

    def convert(raw: str) -> Any:
        try:
            value = kind.parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r} is not {exc}") from None
        reason = kind.problem(value)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    return convert


#: A model server's port.
port_number = kind_type(MODEL_PORT)
#: The REST API's own port.
api_port = kind_type(TCP_PORT)
#: A whole number >= 1.
positive_int = kind_type(Whole(1))
#: A number of seconds > 0.
positive_seconds = kind_type(Number(above=0))
