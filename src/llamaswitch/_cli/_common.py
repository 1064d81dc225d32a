"""What every command shares: exit codes and loading settings with CLI overrides."""

from __future__ import annotations

import argparse
from typing import Any

from llamaswitch._settings import Settings

__all__ = [
    "EXIT_FAILED",
    "EXIT_MISSING",
    "EXIT_OK",
    "EXIT_USAGE",
    "load_settings",
    "port_number",
    "positive_int",
    "positive_seconds",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING = 3


def load_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from the environment and ``.env``, with global CLI options on top."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    for field in ("models_dir", "state_dir"):
        value = getattr(args, field, None)
        if value is not None:
            explicit[field] = value
    return Settings.from_env(**explicit)


def positive_int(raw: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        number = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def positive_seconds(raw: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        seconds = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {raw}")
    return seconds


def port_number(raw: str) -> int:
    """argparse type: a TCP port."""
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, got {port}")
    return port
