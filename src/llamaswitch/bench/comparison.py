"""Several benchmark tasks side by side: one row per test, one column per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from llamaswitch.bench.task import BenchTask

__all__ = ["Comparison", "ComparisonCell", "ComparisonRow", "compare"]


@attrs.frozen
class ComparisonCell:
    """One task's figures for one row of a comparison."""

    avg_ts: float
    stddev_ts: float


@attrs.frozen
class ComparisonRow:
    """One test (and the swept parameters that tell it apart) across the compared tasks."""

    test: str
    #: Parameters that vary within a task's sweep (``{"n_threads": 2}``); empty otherwise.
    params: Mapping[str, Any]
    #: By task id; None where that task has no such test.
    cells: Mapping[str, ComparisonCell | None]

    @property
    def label(self) -> str:
        """``pp512`` or ``pp512 (n_threads=2)``."""
        if not self.params:
            return self.test
        return f"{self.test} ({', '.join(f'{k}={v}' for k, v in self.params.items())})"


@attrs.frozen
class Comparison:
    """Several tasks' results side by side: one row per test, one column per task."""

    tasks: tuple[BenchTask, ...]
    rows: tuple[ComparisonRow, ...]

    @property
    def task_ids(self) -> tuple[str, ...]:
        """The compared tasks, in the order asked."""
        return tuple(task.id for task in self.tasks)

    def to_markdown(self) -> str:
        """A markdown table: ``avg ± stddev`` tokens/s per task."""
        head = ["test", *(f"{t.model} ({t.id[:8]})" for t in self.tasks)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [
                ""
                if (cell := row.cells.get(tid)) is None
                else f"{cell.avg_ts:.2f} ± {cell.stddev_ts:.2f}"
                for tid in self.task_ids
            ]
            lines.append("| " + " | ".join([row.label, *cells]) + " |")
        return "\n".join(lines)


# Columns that measure or identify rather than configure: never used to tell rows apart.
_NOT_CONFIG: Final = frozenset(
    {
        "avg_ns",
        "stddev_ns",
        "avg_ts",
        "stddev_ts",
        "samples_ns",
        "samples_ts",
        "test_time",
        "build_commit",
        "build_number",
        "cpu_info",
        "gpu_info",
        "backends",
        "model_filename",
        "model_type",
        "model_size",
        "model_n_params",
        "n_prompt",
        "n_gen",
        "n_depth",
        "test",
        "t/s",
        "size",
        "params",
    }
)


def compare(tasks: Sequence[BenchTask]) -> Comparison:
    # Parameters swept within a task tell its rows apart (pp16 at 1 and at 2 threads);
    # parameters that differ only between tasks are what the comparison is about.
    varying: list[str] = []
    for task in tasks:
        seen: dict[str, set[str]] = {}
        for result in task.results:
            for key, value in result.params.items():
                if key not in _NOT_CONFIG:
                    seen.setdefault(key, set()).add(repr(value))
        varying += [key for key, values in seen.items() if len(values) > 1 and key not in varying]
    rows: dict[tuple[Any, ...], dict[str, ComparisonCell | None]] = {}
    labels: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    for task in tasks:
        occurrences: dict[tuple[Any, ...], int] = {}
        for result in task.results:
            params = {key: result.params.get(key) for key in varying}
            base = (result.test, tuple(repr(v) for v in params.values()))
            occurrences[base] = occurrences.get(base, 0) + 1
            row_key = (*base, occurrences[base])
            if row_key not in rows:
                rows[row_key] = {t.id: None for t in tasks}
                labels[row_key] = (result.test, params)
            rows[row_key][task.id] = ComparisonCell(result.avg_ts, result.stddev_ts)
    return Comparison(
        tasks=tuple(tasks),
        rows=tuple(
            ComparisonRow(test=labels[key][0], params=labels[key][1], cells=cells)
            for key, cells in rows.items()
        ),
    )
