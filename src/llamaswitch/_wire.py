"""The one wire format: how every value that crosses JSON is written and read back.

One :mod:`cattrs` converter serves the REST adapter (responses, events), the remote
client (it reads those responses back into the same types), the CLI's ``--json``, the
benchmark database's JSON columns and the child registry's file. Rules:

- attrs classes become objects of their fields, in declaration order (the seed's
  fields come first where a class carries them);
- times are ISO 8601 UTC with milliseconds and a ``Z`` (``2026-01-31T12:00:00.123Z``),
  in every field;
- paths are strings, enums their value, tuples and mappings arrays and objects;
- configs (:class:`~llamaswitch.ServerConfig`, :class:`~llamaswitch.BenchConfig`) are
  written as the fields that are set and read back through their own strict
  ``from_dict`` (unknown keys refused); everything else is read leniently, so that a
  newer service's additional fields do not break an older client.

>>> from llamaswitch.bench.task import BenchProgress
>>> to_wire(BenchProgress(done=1, total=2))
{'done': 1, 'total': 2, 'current': None, 'step': None}
>>> from_wire({"done": 1, "total": 2}, BenchProgress)
BenchProgress(done=1, total=2, current=None, step=None)
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Final, TypeVar

import cattrs
import cattrs.gen

from llamaswitch._binaries import BinaryInfo
from llamaswitch._doctor import DoctorReport
from llamaswitch._text import scrub
from llamaswitch._time import format_time, parse_time
from llamaswitch.bench.comparison import Comparison, ComparisonCell, ComparisonRow
from llamaswitch.bench.config import BenchConfig
from llamaswitch.bench.parser import BenchResult
from llamaswitch.bench.task import BenchTask
from llamaswitch.gateway.requests import RequestRecord
from llamaswitch.servers.config import ServerConfig

__all__ = ["dumps", "format_time", "from_wire", "parse_time", "to_wire"]

T = TypeVar("T")

_converter: Final = cattrs.Converter()


def _is_mapping(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _mapping(value: Mapping[Any, Any]) -> dict[Any, Any]:
    # JSON keys are strings: write them so, so that to_wire's data equals what a client
    # reads back (a VRAM figure per GPU index: {"0": 512}).
    return {
        k if isinstance(k, str) else str(k): _converter.unstructure(v) for k, v in value.items()
    }


_converter.register_unstructure_hook(datetime, format_time)
_converter.register_unstructure_hook(PurePath, str)
_converter.register_unstructure_hook(Path, str)
_converter.register_unstructure_hook_func(lambda t: isinstance(t, type) and issubclass(t, Enum),
                                          lambda e: e.value)  # fmt: skip
_converter.register_unstructure_hook(types.MappingProxyType, _mapping)
_converter.register_unstructure_hook_func(_is_mapping, _mapping)
_converter.register_unstructure_hook(ServerConfig, ServerConfig.to_dict)
_converter.register_unstructure_hook(BenchConfig, BenchConfig.to_dict)

_converter.register_structure_hook(datetime, lambda v, _: parse_time(v))
_converter.register_structure_hook(Path, lambda v, _: Path(v))
_converter.register_structure_hook(ServerConfig, lambda v, _: ServerConfig.from_dict(v))
_converter.register_structure_hook(BenchConfig, lambda v, _: BenchConfig.from_dict(v))
_converter.register_structure_hook(BenchResult, lambda v, _: BenchResult.from_dict(v))


def _unstructure_task(task: BenchTask) -> dict[str, Any]:
    data: dict[str, Any] = {"id": task.id, "task_id": task.id}  # the seed names it task_id
    for name, value in _converter.unstructure_attrs_asdict(task).items():
        data.setdefault(name, value)
    return data


def _structure_task(data: Mapping[str, Any], _: type) -> BenchTask:
    fields = {k: v for k, v in data.items() if k != "task_id"}
    return _converter.structure_attrs_fromdict(fields, BenchTask)


def _unstructure_comparison(comparison: Comparison) -> dict[str, Any]:
    return {
        "tasks": [_converter.unstructure(task) for task in comparison.tasks],
        "rows": [
            {
                "test": row.test,
                "label": row.label,
                "params": _converter.unstructure(row.params),
                "results": {
                    task_id: None if cell is None else _converter.unstructure(cell)
                    for task_id, cell in row.cells.items()
                },
            }
            for row in comparison.rows
        ],
    }


def _structure_comparison(data: Mapping[str, Any], _: type) -> Comparison:
    rows = tuple(
        ComparisonRow(
            test=row["test"],
            params=dict(row.get("params") or {}),
            cells={
                task_id: None if cell is None else _converter.structure(cell, ComparisonCell)
                for task_id, cell in (row.get("results") or {}).items()
            },
        )
        for row in data.get("rows") or ()
    )
    tasks = tuple(_structure_task(task, BenchTask) for task in data.get("tasks") or ())
    return Comparison(tasks=tasks, rows=rows)


def _unstructure_binary(info: BinaryInfo) -> dict[str, Any]:
    # What a binary is, as doctor and task records show it: its identity, not its --help.
    return {"kind": info.kind, "path": str(info.path), "version": info.version,
            "release": info.release, "build_number": info.build_number, "commit": info.commit,
            "compiler": info.compiler, "backends": list(info.backends), "dialect": info.dialect,
            "source": info.source}  # fmt: skip


def _unstructure_report(report: DoctorReport) -> dict[str, Any]:
    # `doctor --json`: each check's own data beside its verdict.
    return {"ok": report.ok, "checks": [
        {"name": c.name, "status": c.status, "required": c.required, "detail": c.detail,
         "fix": c.fix, **_converter.unstructure(c.data)}
        for c in report.checks
    ], "settings": [{"key": key, "value": value, "source": source}
                    for key, value, source in report.settings]}  # fmt: skip


# A request record's monotonic start means nothing outside this process; its template
# and resolved flag are the metrics' (``route`` and ``model`` say it on the wire).
_OMIT = cattrs.gen.override(omit=True)
_converter.register_unstructure_hook(RequestRecord, cattrs.gen.make_dict_unstructure_fn(
    RequestRecord, _converter, began=_OMIT, template=_OMIT, resolved=_OMIT))  # fmt: skip
_converter.register_unstructure_hook(BinaryInfo, _unstructure_binary)
_converter.register_unstructure_hook(DoctorReport, _unstructure_report)
_converter.register_unstructure_hook(BenchTask, _unstructure_task)
_converter.register_structure_hook(BenchTask, _structure_task)
_converter.register_unstructure_hook(Comparison, _unstructure_comparison)
_converter.register_structure_hook(Comparison, _structure_comparison)


def to_wire(value: Any) -> Any:
    """``value`` as JSON-ready data (dicts, lists, strings, numbers, None)."""
    return _converter.unstructure(value)


def from_wire(data: Any, cls: type[T]) -> T:
    """``cls`` rebuilt from :func:`to_wire`'s data (leniently: unknown keys are ignored,
    configs excepted). Raises ``cattrs`` errors (``ValueError``/``TypeError`` kinds) for
    data that does not fit."""
    return _converter.structure(data, cls)


def _finite(value: object) -> object:
    """NaN and infinities as null: strict JSON parsers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> bytes:
    """Compact UTF-8 JSON of any wire value (typed objects go through :func:`to_wire`).

    NaN becomes null (a llama-bench stddev can be NaN); text that is not valid Unicode
    (a row an older version stored) has U+FFFD in place of the lone surrogates, so that
    an answer never fails as a whole.
    """
    data = to_wire(value)
    separators = (",", ":") if indent is None else (",", ": ")
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=separators,
                          indent=indent)  # fmt: skip
    except ValueError:
        text = json.dumps(_finite(data), ensure_ascii=False, separators=separators,
                          indent=indent)  # fmt: skip
    try:
        return text.encode()
    except UnicodeEncodeError:
        return scrub(text).encode()
