"""``llamaswitch doctor``: a newcomer's first command."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from llamaswitch._cli._api import print_json
from llamaswitch._cli._common import EXIT_MISSING, EXIT_OK, load_settings
from llamaswitch._cli._config import settings_table

__all__ = ["register"]

_STYLE = {"ok": "green", "warning": "yellow", "missing": "bold red"}


def register(sub: Any) -> None:
    """Add the ``doctor`` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="show which llama.cpp binaries, models and GPUs were found, and how to fix gaps",
        description="Check binaries, models folder, NVIDIA GPU and state folder. Exit code 3 "
        "when something required is missing.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report for scripts")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from llamaswitch._doctor import run_doctor

    report = run_doctor(load_settings(args))
    if args.json:
        print_json(report)
    else:
        console = Console()
        table = Table(title="llamaswitch doctor", show_lines=False)
        table.add_column("check")
        table.add_column("status")
        table.add_column("details", overflow="fold")
        for check in report.checks:
            table.add_row(check.name, f"[{_STYLE[check.status]}]{check.status}[/]", check.detail)
        console.print(table)
        console.print(settings_table(report.settings))
        fixes = [c for c in report.checks if not c.ok and c.fix]
        for check in fixes:
            console.print(f"[bold]to fix {check.name}:[/] {check.fix}", highlight=False)
        if report.ok:
            console.print("[green]everything required was found[/]")
    return EXIT_OK if report.ok else EXIT_MISSING
