"""Readable output for people: rich tables and human units.

Commands render the plain JSON data a backend returns (the REST ``data`` shapes), never
library objects, so a table looks the same whether the command ran in-process or
against ``--url``. ``--json`` prints that same data instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["console", "err_console", "human_bytes", "human_count", "text", "value"]


def console() -> Console:
    """A console on stdout (colours only on a terminal: rich checks)."""
    return Console(highlight=False, soft_wrap=False)


def err_console() -> Console:
    """A console on stderr, for progress and notes that must not mix with ``--json``."""
    return Console(stderr=True, highlight=False)


def _scaled(value: Any, base: float, units: tuple[str, ...], whole: str, last: str) -> str:
    """``value`` in the largest unit under ``base``; the first unit printed as a whole."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    amount = float(value)
    for unit in units:
        if abs(amount) < base:
            return whole.format(amount, unit) if unit == units[0] else f"{amount:.2f}{unit}"
        amount /= base
    return f"{amount:.2f}{last}"


def human_bytes(size: Any) -> str:
    """``4815463424`` -> ``"4.48 GiB"``; empty for None."""
    return _scaled(size, 1024, (" B", " KiB", " MiB", " GiB"), "{:.0f}{}", " TiB")


def human_count(count: Any) -> str:
    """``6738415616`` -> ``"6.74B"``, ``124000`` -> ``"124.00K"``; empty for None."""
    return _scaled(count, 1000, ("", "K", "M", "B"), "{:.0f}{}", "T")


def value(data: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` that ``data`` has and is not None (wire shapes vary a little
    between the library's objects and the REST API's additions)."""
    for key in keys:
        found = data.get(key)
        if found is not None:
            return found
    return None


def text(item: Any) -> str:
    """A cell: empty for None, ``yes``/``no`` for booleans, numbers as written."""
    if item is None:
        return ""
    if isinstance(item, bool):
        return "yes" if item else "no"
    if isinstance(item, float):
        return f"{item:.2f}"
    if isinstance(item, list | tuple):
        return ",".join(text(i) for i in item)
    return str(item)


def speed(mean: float | None, stddev: float | None) -> str:
    """A throughput with its spread: ``12.34 ± 0.56`` (no spread: the mean alone)."""
    if mean is None:
        return ""
    return f"{mean:.2f} ± {stddev:.2f}" if stddev is not None else f"{mean:.2f}"


def progress_columns() -> tuple[ProgressColumn, ...]:
    """The live bar of a benchmark task or a tune: state, bar, done/total, time, what runs
    (a row's fields ``state`` and ``current``)."""
    return (
        TextColumn("[bold]{task.fields[state]:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
    )
