"""The ``llamaswitch`` command line.

Each command group lives in its own module that exposes ``register(subparsers)``; the
module's handler gets the parsed arguments and returns the process exit code.
Exit codes scripts can rely on (docs/cli.md has the full table): 0 success, 1 the
operation failed, 2 bad usage, configuration or validation, 3 something required is
missing (a llama.cpp binary, a model, a server, a task), 4 a conflict (port in use, a
superseded switch), 5 the service at --url is unreachable or refused the key, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from llamaswitch._cli._common import EXIT_FAILED, EXIT_MISSING, EXIT_OK, EXIT_USAGE
from llamaswitch._errors import LlamaSwitchError, SettingsError

__all__ = ["EXIT_FAILED", "EXIT_MISSING", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every command registered."""
    from llamaswitch._cli import (
        _bench,
        _config,
        _doctor,
        _models,
        _serve,
        _servers,
        _toolchain,
        _tune,
    )

    parser = argparse.ArgumentParser(
        prog="llamaswitch",
        description="Run, switch and benchmark llama.cpp models on your own hardware.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--models-dir", dest="models_dir", help="models folder (overrides MODELS_DIR)"
    )
    parser.add_argument(
        "--state-dir", dest="state_dir", help="state folder (overrides LLAMASWITCH_STATE_DIR)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (_models, _servers, _bench, _tune, _serve, _config, _doctor, _toolchain):
        module.register(sub)
    return parser


def _version() -> str:
    from llamaswitch._version import __version__

    return f"llamaswitch {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llamaswitch`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SettingsError as exc:
        print(f"llamaswitch: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LlamaSwitchError as exc:
        print(f"llamaswitch: {exc}", file=sys.stderr)
        return exc.cli_exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `llamaswitch ... | head` closed the pipe: not an error of ours. Point stdout at
        # devnull so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return code
