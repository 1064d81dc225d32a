"""``llamaswitch config``: every effective setting, its value and where it came from.

Like ``git config --list --show-origin``: the source is ``argument`` (a command-line
option), ``environment``, the ``.env`` file (by path) or ``default``. The API key is
masked. ``doctor`` prints the same table.

Examples::

    llamaswitch config
    CONFIG_PATH=/srv/llama/.env llamaswitch config --json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from llamaswitch._cli._api import guarded, print_json
from llamaswitch._cli._common import EXIT_OK, load_settings
from llamaswitch._cli._render import console

__all__ = ["register", "settings_table"]


def register(sub: Any) -> None:
    """Add the ``config`` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "config",
        help="every effective setting with its value and source",
        description="List every setting in effect: its value and where it came from "
        "(argument, environment, the .env file by path, or default).",
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the settings as JSON")
    parser.set_defaults(handler=guarded(_run))


def settings_table(rows: Sequence[tuple[str, str, str]]) -> Table:
    """``key | value | source``, one row per setting."""
    table = Table(title="settings")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", overflow="fold")
    for key, value, source in rows:
        style = "dim" if source == "default" else ""
        table.add_row(escape(key), escape(value), escape(source), style=style)
    return table


def _run(args: argparse.Namespace) -> int:
    rows = load_settings(args).describe()
    if args.json:
        print_json([{"key": key, "value": value, "source": source} for key, value, source in rows])
    else:
        console().print(settings_table(rows))
    return EXIT_OK
