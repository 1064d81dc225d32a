"""What every command shares: exit codes and loading settings with CLI overrides."""

from __future__ import annotations

import argparse
from typing import Any

from llamaswitch._settings import Settings

__all__ = ["EXIT_FAILED", "EXIT_MISSING", "EXIT_OK", "EXIT_USAGE", "load_settings"]

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
