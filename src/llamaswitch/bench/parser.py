"""Parse llama-bench output: md, csv, json, jsonl and sql, from old and new builds.

llama-bench prints one result per test (a ``pp``, ``tg`` or combined ``pp+tg`` run at a
given depth, for one combination of the swept parameters). :func:`parse_bench_output`
turns any of its five output formats into :class:`BenchResult` values:

>>> text = '''[
...   {
...     "model_filename": "/models/tiny.gguf",
...     "n_threads": 2,
...     "n_prompt": 16,
...     "n_gen": 0,
...     "n_depth": 0,
...     "avg_ts": 52810.5,
...     "stddev_ts": 120.25
...   }
... ]'''
>>> [result] = parse_bench_output(text, "json")
>>> result.test, result.avg_ts, result.params["n_threads"]
('pp16', 52810.5, 2)

What the formats carry, and how this module reads them:

- **json, jsonl** carry every column, typed, plus the raw samples. They are the
  reference: prefer them. A row's ``params`` holds every key of its object (lists become
  tuples), whatever llama.cpp adds in the future.
- **csv, sql** carry every column as text. Known columns are typed as llama-bench types
  them (ints, bools, floats, strings); sql's ``CREATE TABLE`` types the unknown ones,
  and in csv an unknown column reads as an int or a float when its text is one. They
  carry no samples.
- **md** carries only what the table shows: the model *type* (not its file: pass
  ``model_filename=``), the size and parameter count rounded for display, the test name,
  ``avg ± stddev`` rounded to two decimals and the columns the command line changed.
  ``model_size`` and ``model_n_params`` are ``None`` for md rows: the rounded texts
  (``"0.45 MiB"``, ``"0.12 M"``) are kept in ``params["size"]`` and ``params["params"]``
  rather than turned into numbers that would look exact and are not. Known column titles
  are mapped to their JSON names (``threads`` to ``n_threads``, ``fa`` to
  ``flash_attn``, ``model`` to ``model_type``, ...). The ``build: <commit> (<number>)``
  footer fills ``build_commit`` and ``build_number``.

Differences between llama.cpp generations that matter here: ``flash_attn`` is a bool in
older builds (``-fa 0|1``) and an int in newer ones (-1 auto, 0 off, 1 on); newer builds
replace ``use_mmap`` with ``load_mode`` and add ``n_cpu_moe``, ``devices``,
``lazy_mode``, ``no_op_offload``, ``no_host``, ``repack``, ``fit_target`` and
``fit_min_ctx``; the sql table is ``test`` in older builds and ``llama_bench`` in newer
ones. Text formats do not say which generation printed them: a ``flash_attn`` of ``0``
or ``1`` reads as a bool when the columns include ``use_mmap`` (older builds) and as an
int otherwise.

Known quirks of llama-bench that the parser copes with: its JSON escaper turns each
byte of a non-ASCII character into ``\\uffff`` followed by ``f`` (the original text is
lost, so :func:`parse_bench_output` treats such a ``model_filename`` as missing and
fills it from ``model_filename=``); it writes non-finite numbers as ``inf`` and ``nan``,
which JSON lacks; sql values are quoted but never escaped, so a value containing
``', '`` cannot be told apart from two values and raises :class:`BenchParseError`.

Malformed input raises :class:`~llamaswitch.BenchParseError` naming the line (and the
character position for JSON syntax errors), never another exception type. Text that is
not valid Unicode (a lone surrogate: undecodable bytes read with ``surrogateescape``, or
a JSON ``"\\ud800"`` escape) is malformed too: no string that comes out can fail to be
written to SQLite, a JSON answer or a log.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import attrs

from llamaswitch._errors import BenchParseError
from llamaswitch._text import encodable

__all__ = [
    "BENCH_OUTPUT_FORMATS",
    "BenchResult",
    "bench_test_name",
    "parse_bench_output",
    "parse_jsonl_line",
    "parse_progress_line",
]

BENCH_OUTPUT_FORMATS: Final = ("md", "csv", "json", "jsonl", "sql")
"""The values llama-bench accepts for ``-o`` and ``-oe``."""

# Column types as llama-bench's ``test::get_field_type`` declares them, over both
# generations. ``flash_attn`` is absent on purpose: its type depends on the generation.
_INT_FIELDS: Final = frozenset(
    {
        "build_number", "model_size", "model_n_params", "n_batch", "n_ubatch",
        "n_threads", "poll", "n_gpu_layers", "n_cpu_moe", "main_gpu", "no_op_offload",
        "fit_target", "fit_min_ctx", "n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns",
    }
)  # fmt: skip
_BOOL_FIELDS: Final = frozenset(
    {
        "f16_kv", "cpu_strict", "no_kv_offload", "use_mmap", "embeddings", "no_host", "repack",
        # backend flags of 2024 builds, before the "backends" column
        "cuda", "vulkan", "kompute", "metal", "sycl", "gpu_blas", "blas",
    }
)  # fmt: skip
_FLOAT_FIELDS: Final = frozenset({"avg_ts", "stddev_ts"})
_STR_FIELDS: Final = frozenset(
    {
        "build_commit", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
        "cpu_mask", "type_k", "type_v", "split_mode", "devices", "tensor_split",
        "tensor_buft_overrides", "load_mode", "lazy_mode", "test_time",
    }
)  # fmt: skip
_REQUIRED: Final = ("n_prompt", "n_gen", "avg_ts", "stddev_ts")

# Markdown column titles (llama-bench's ``get_field_display_name``) to JSON names.
# ``size`` and ``params`` stay as they are: their cells are rounded display texts.
_MD_COLUMNS: Final = types.MappingProxyType(
    {
        "model": "model_type", "backend": "backends", "ngl": "n_gpu_layers",
        "sm": "split_mode", "threads": "n_threads", "nkvo": "no_kv_offload",
        "fa": "flash_attn", "mmap": "use_mmap", "lm": "load_mode", "embd": "embeddings",
        "nopo": "no_op_offload", "noh": "no_host", "rpk": "repack", "dev": "devices",
        "ts": "tensor_split", "ot": "tensor_buft_overrides", "fitt": "fit_target",
        "fitc": "fit_min_ctx",
    }
)  # fmt: skip

_TEST_NAME = re.compile(
    r"(?:pp(?P<pp>-?\d+)\+tg(?P<tg>-?\d+)|pp(?P<p>\d+)|tg(?P<g>\d+))(?: @ d(?P<d>\d+))?"
)
_MD_SEPARATOR = re.compile(r"\|(?:\s*:?-+:?\s*\|)+")
_MD_FOOTER = re.compile(r"build: (?P<commit>\S+) \((?P<number>-?\d+)\)")
_PROGRESS = re.compile(r"llama-bench: benchmark (\d+)/(\d+): (.*)")
# The table name stops at "(": with `\S+` it could take the parenthesis too, and the
# backtracking was quadratic: a 40 kB line of "(" took 4 s, holding the GIL all along.
_SQL_INSERT = re.compile(
    r"INSERT INTO\s+[^\s(]+\s*\((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<values>.*)\)\s*;",
    re.IGNORECASE,
)
_SQL_CREATE = re.compile(r"CREATE TABLE\b.*\(", re.IGNORECASE)
_SQL_LITERAL = re.compile(r"\s*(?:'(?P<text>(?:[^']|'')*)'|(?P<null>NULL)|(?P<bare>[^,'\s]+))\s*")
# C's printf writes non-finite doubles as inf/nan, which JSON does not have.
_JSON_NONFINITE = re.compile(r"(?<=[\s\[,:])(-?)(inf|nan)(?=\s*[,\]}])")
# What llama-bench's JSON escaper makes of every byte of a non-ASCII character.
_MANGLED_BYTE: Final = "\uffff"
# A JSON escape of a surrogate. A pair decodes to one character, a lone one to a lone
# surrogate: only a text holding such an escape needs its decoded strings checked.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _freeze_params(params: Mapping[str, object]) -> Mapping[str, object]:
    # A read-only view is kept as it is: the parser hands over views of dicts it no
    # longer touches, and copying 40-odd columns per row would cost a fifth of a parse.
    if type(params) is types.MappingProxyType:
        return params
    return types.MappingProxyType(dict(params))


def _optional_tuple(values: Iterable[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values)


def _optional_int_tuple(values: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(values)


@attrs.frozen(kw_only=True)
class BenchResult:
    """One llama-bench result: one test of one parameter combination.

    ``test`` is the name llama-bench gives the test in its markdown table (``pp512``,
    ``tg128``, ``pp512+tg128``, ``pp512 @ d4096``). Throughputs are tokens per second,
    times are nanoseconds, ``model_size`` is in bytes. Fields a format does not carry are
    ``None`` (md carries neither the model file nor the times in nanoseconds; only JSON
    carries the samples). ``params`` holds every column of the row as parsed, known or
    not, typed (ints, floats, bools, strings; JSON lists become tuples).
    """

    model_filename: str | None = None
    model_type: str | None = None
    model_size: int | None = None
    model_n_params: int | None = None
    test: str
    n_prompt: int
    n_gen: int
    n_depth: int = 0
    avg_ts: float
    stddev_ts: float
    avg_ns: int | None = None
    stddev_ns: int | None = None
    samples_ts: tuple[float, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    samples_ns: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_int_tuple)
    build_commit: str | None = None
    build_number: int | None = None
    backends: str | None = None
    test_time: str | None = None
    # A mapping is not hashable: hashing goes by the other fields.
    params: Mapping[str, object] = attrs.field(factory=dict, converter=_freeze_params, hash=False)

    def to_dict(self) -> dict[str, object]:
        """The result as plain JSON-ready data (tuples become lists).

        >>> result = BenchResult(test="tg8", n_prompt=0, n_gen=8, avg_ts=1.5, stddev_ts=0.0)
        >>> result.to_dict()["samples_ns"], result.to_dict()["test"]
        (None, 'tg8')
        """
        data = attrs.asdict(self, recurse=False)
        for key in ("samples_ts", "samples_ns"):
            if data[key] is not None:
                data[key] = list(data[key])
        data["params"] = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self.params.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> BenchResult:
        """Rebuild a result from :meth:`to_dict`'s output (read back from a store).

        Raises ``ValueError`` when a key is unknown, a required one is missing or a value
        has the wrong type.
        """
        names = {field.name for field in attrs.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown BenchResult keys: {sorted(unknown)}")
        try:
            result = _result_from_row(
                {
                    "model_filename": data.get("model_filename"),
                    "model_type": data.get("model_type"),
                    "model_size": data.get("model_size"),
                    "model_n_params": data.get("model_n_params"),
                    "n_prompt": data.get("n_prompt"),
                    "n_gen": data.get("n_gen"),
                    "n_depth": data.get("n_depth", 0),
                    "avg_ts": data.get("avg_ts"),
                    "stddev_ts": data.get("stddev_ts"),
                    "avg_ns": data.get("avg_ns"),
                    "stddev_ns": data.get("stddev_ns"),
                    "samples_ts": data.get("samples_ts"),
                    "samples_ns": data.get("samples_ns"),
                    "build_commit": data.get("build_commit"),
                    "build_number": data.get("build_number"),
                    "backends": data.get("backends"),
                    "test_time": data.get("test_time"),
                },
                params=_check_params(data.get("params", {})),
                model_filename=None,
            )
            test = _optional_str(data, "test") or result.test
        except _RowError as exc:
            raise ValueError(str(exc)) from None
        return attrs.evolve(result, test=test)


def bench_test_name(n_prompt: int, n_gen: int, n_depth: int = 0) -> str:
    """The name llama-bench's markdown table gives a test.

    >>> bench_test_name(512, 0), bench_test_name(0, 128, 4096), bench_test_name(16, 8)
    ('pp512', 'tg128 @ d4096', 'pp16+tg8')
    """
    if n_prompt > 0 and n_gen == 0:
        name = f"pp{n_prompt}"
    elif n_gen > 0 and n_prompt == 0:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}+tg{n_gen}"
    return f"{name} @ d{n_depth}" if n_depth > 0 else name


def parse_bench_output(
    text: str, fmt: str, *, model_filename: str | None = None
) -> list[BenchResult]:
    """Parse llama-bench's output in format ``fmt`` (one of :data:`BENCH_OUTPUT_FORMATS`).

    ``model_filename`` fills the model file of rows that lack one: every md row, and any
    row whose file name is missing, empty or garbled by llama-bench's JSON escaper.
    Blank lines and CRLF line ends are accepted everywhere; md and jsonl also accept
    noise lines (warnings) before, between and after the results. An output that holds
    no results at all is an empty list, except that md, csv, json and sql output always
    start with a header (a table head, a column line, ``[`` or ``CREATE TABLE``), whose
    absence raises.

    Raises :class:`~llamaswitch.BenchParseError` (with the line number) for malformed
    output, text that is not valid Unicode included, and ``ValueError`` for an unknown
    ``fmt`` or a ``model_filename`` that is not valid Unicode.
    """
    text = text.removeprefix("\ufeff")
    _check_unicode(text, None)
    _check_model_filename(model_filename)
    if fmt == "json":
        return _parse_json(text, model_filename)
    if fmt == "jsonl":
        return _parse_jsonl(text, model_filename)
    if fmt == "csv":
        return _parse_csv(text, model_filename)
    if fmt == "sql":
        return _parse_sql(text, model_filename)
    if fmt == "md":
        return _parse_md(text, model_filename)
    allowed = ", ".join(BENCH_OUTPUT_FORMATS)
    raise ValueError(f"unknown llama-bench output format {fmt!r}: use one of {allowed}")


def parse_jsonl_line(
    line: str, *, model_filename: str | None = None, line_number: int | None = None
) -> BenchResult | None:
    """Parse one line of ``-o jsonl`` / ``-oe jsonl`` output; ``None`` if it is no result.

    Lines that do not start with ``{`` (progress lines, warnings, blank lines) give
    ``None``, so a runner can feed every stderr line of ``--progress -oe jsonl`` here and
    to :func:`parse_progress_line`. A line that starts with ``{`` but is not a valid
    result raises :class:`~llamaswitch.BenchParseError` (naming ``line_number`` if given),
    a line that is not valid Unicode included; a ``model_filename`` that is not valid
    Unicode raises ``ValueError``.
    """
    _check_model_filename(model_filename)
    stripped = line.strip()
    if not stripped.startswith("{"):
        return None
    _check_unicode(stripped, line_number)
    return _jsonl_result(stripped, model_filename, line_number)


def _jsonl_result(
    stripped: str, model_filename: str | None, line_number: int | None
) -> BenchResult:
    """The result of a jsonl line that starts with ``{`` and is valid Unicode."""
    row, _ = _load_json(stripped, line=line_number)
    if not isinstance(row, dict):
        raise BenchParseError("expected a JSON object", line=line_number)
    if _ESCAPED_SURROGATE.search(stripped):
        _check_decoded(row, line_number)
    return _typed_result(row, model_filename, line_number)


def parse_progress_line(line: str) -> tuple[int, int, str] | None:
    """Parse a ``--progress`` line of llama-bench's stderr.

    Returns ``(test index, test count, what it is doing)``, the index counting from 1, or
    ``None`` for any other line.

    >>> parse_progress_line("llama-bench: benchmark 1/2: prompt run 1/2")
    (1, 2, 'prompt run 1/2')
    """
    match = _PROGRESS.fullmatch(line.strip())
    if match is None:
        return None
    try:
        return int(match[1]), int(match[2]), match[3]
    except ValueError:  # a count longer than Python's int digit limit: not llama-bench's
        return None


# --- valid Unicode -----------------------------------------------------------------


def _check_unicode(text: str, line: int | None) -> None:
    """Refuse text that holds a lone surrogate, naming where (``line``: the text's own)."""
    if text.isascii():  # a flag lookup in CPython; llama-bench prints ASCII but for "±"
        return
    try:
        text.encode("utf-8")  # a C loop: a regex search would cost 5 ms a megabyte
    except UnicodeEncodeError as exc:
        position = exc.start
    else:
        return
    column = position - text.rfind("\n", 0, position)
    raise BenchParseError(
        f"text is not valid Unicode (lone surrogate U+{ord(text[position]):04X}, column {column})",
        line=text.count("\n", 0, position) + 1 if line is None else line,
    )


def _check_model_filename(model_filename: str | None) -> None:
    if model_filename is not None and not encodable(model_filename):
        raise ValueError(f"model_filename {model_filename!r} is not valid Unicode")


def _check_decoded(value: object, line: int | None) -> None:
    """Refuse decoded JSON where an escape left a lone surrogate in a key or a string."""
    pending = [value]
    while pending:  # not recursive: the JSON may nest as deep as json.loads allows
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                near = item[max(0, exc.start - 20) : exc.start + 20]  # repr escapes it
                raise BenchParseError(
                    f"text is not valid Unicode (lone surrogate escaped in {near!r})", line=line
                ) from None
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


# --- typed rows (json, jsonl, and csv/sql after conversion) -------------------------


class _RowError(ValueError):
    """A row is not a valid result; the caller adds the line number."""


def _typed_result(
    row: dict[str, object], model_filename: str | None, line: int | None
) -> BenchResult:
    """The result of a freshly parsed row, which it takes over (the row becomes params)."""
    for key, value in row.items():
        if type(value) is list:
            row[key] = tuple(value)
    missing = [key for key in _REQUIRED if key not in row]
    if missing:
        raise BenchParseError(f"missing columns {missing}", line=line)
    try:
        params = types.MappingProxyType(row)
        return _result_from_row(row, params=params, model_filename=model_filename)
    except _RowError as exc:
        raise BenchParseError(str(exc), line=line) from None


def _result_from_row(
    row: Mapping[str, object], *, params: Mapping[str, object], model_filename: str | None
) -> BenchResult:
    n_prompt = _int(row, "n_prompt")
    n_gen = _int(row, "n_gen")
    n_depth = _int(row, "n_depth") or 0
    avg_ts = _float(row, "avg_ts")
    stddev_ts = _float(row, "stddev_ts")
    if n_prompt is None or n_gen is None or avg_ts is None or stddev_ts is None:
        raise _RowError("n_prompt, n_gen, avg_ts and stddev_ts must not be null")
    filename = _optional_str(row, "model_filename")
    if model_filename is not None and (not filename or _MANGLED_BYTE in filename):
        filename = model_filename
    return BenchResult(
        model_filename=filename,
        model_type=_optional_str(row, "model_type"),
        model_size=_int(row, "model_size"),
        model_n_params=_int(row, "model_n_params"),
        test=bench_test_name(n_prompt, n_gen, n_depth),
        n_prompt=n_prompt,
        n_gen=n_gen,
        n_depth=n_depth,
        avg_ts=avg_ts,
        stddev_ts=stddev_ts,
        avg_ns=_int(row, "avg_ns"),
        stddev_ns=_int(row, "stddev_ns"),
        samples_ts=_float_samples(row, "samples_ts"),
        samples_ns=_int_samples(row, "samples_ns"),
        build_commit=_optional_str(row, "build_commit"),
        build_number=_int(row, "build_number"),
        backends=_optional_str(row, "backends"),
        test_time=_optional_str(row, "test_time"),
        params=params,
    )


def _check_params(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ValueError("params must be a mapping with string keys")
    return {key: tuple(item) if isinstance(item, list) else item for key, item in value.items()}


def _int(row: Mapping[str, object], key: str) -> int | None:
    value = row.get(key)
    if type(value) is int or value is None:  # not isinstance: a bool is no count
        return value
    raise _RowError(f"column {key!r} must be an integer, got {value!r}")


def _float(row: Mapping[str, object], key: str) -> float | None:
    value = row.get(key)
    if type(value) is float or value is None:
        return value
    if type(value) is int:
        return float(value)
    raise _RowError(f"column {key!r} must be a number, got {value!r}")


def _optional_str(row: Mapping[str, object], key: str) -> str | None:
    value = row.get(key)
    if type(value) is str or value is None:
        return value
    raise _RowError(f"column {key!r} must be a string, got {value!r}")


def _float_samples(row: Mapping[str, object], key: str) -> tuple[float, ...] | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, list | tuple) and all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value
    ):
        return tuple(float(item) for item in value)
    raise _RowError(f"column {key!r} must be a list of numbers, got {value!r}")


def _int_samples(row: Mapping[str, object], key: str) -> tuple[int, ...] | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, list | tuple) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    ):
        return tuple(value)
    raise _RowError(f"column {key!r} must be a list of integers, got {value!r}")


# --- json and jsonl -------------------------------------------------------------------


def _load_json(text: str, *, line: int | None = None) -> tuple[object, str]:
    """``json.loads`` that reads C's ``inf``/``nan`` and raises only BenchParseError.

    Returns the value and the text it was read from (``inf`` repaired, same lines).
    ``line`` is the line number to report for a one-line text (jsonl); without it the
    error's own line within ``text`` is reported.
    """
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        error = exc
    except RecursionError:
        raise BenchParseError("JSON nested too deeply", line=line or 1) from None
    except ValueError as exc:  # JSONDecodeError is one too, caught above
        raise _number_too_long(text, line, exc) from None
    repaired = _JSON_NONFINITE.sub(_json_nonfinite, text)
    if repaired != text:
        try:
            return json.loads(repaired), repaired
        except (json.JSONDecodeError, RecursionError):
            pass  # report the error in the text as given
        except ValueError as exc:
            raise _number_too_long(repaired, line, exc) from None
    raise BenchParseError(
        f"invalid JSON: {error.msg} (column {error.colno}, position {error.pos})",
        line=error.lineno if line is None else line,
    ) from None


def _number_too_long(text: str, line: int | None, error: ValueError) -> BenchParseError:
    """The error for an integer longer than Python's int digit limit.

    ``json`` raises a bare ValueError for it, without a position: find the number.
    """
    limit = sys.get_int_max_str_digits()
    # Where a JSON value starts (a long digit run inside a string is no number).
    match = re.search(rf"(?<=[\[,:\s-])[0-9]{{{limit + 1},}}", text) if limit else None
    if match is None:
        return BenchParseError(f"invalid JSON: {error}", line=line or 1)
    start = match.start()
    column = start - text.rfind("\n", 0, start)
    return BenchParseError(
        f"invalid JSON: an integer of {len(match[0])} digits, over Python's limit of "
        f"{limit} (column {column}, position {start})",
        line=text.count("\n", 0, start) + 1 if line is None else line,
    )


def _json_nonfinite(match: re.Match[str]) -> str:
    if match[2] == "nan":
        return "NaN"
    return "-Infinity" if match[1] else "Infinity"


def _parse_json(text: str, model_filename: str | None) -> list[BenchResult]:
    data, text = _load_json(text)
    if not isinstance(data, list):
        raise BenchParseError("expected a JSON array of results", line=1)
    escaped_surrogates = _ESCAPED_SURROGATE.search(text) is not None
    results = []
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise BenchParseError(
                f"result {index + 1} is not a JSON object", line=_json_element_line(text, index)
            )
        try:
            if escaped_surrogates:
                _check_decoded(row, None)
            results.append(_typed_result(row, model_filename, None))
        except BenchParseError as exc:
            line = _json_element_line(text, index)
            raise BenchParseError(f"result {index + 1}: {exc}", line=line) from None
    return results


def _json_element_line(text: str, index: int) -> int:
    """The line where element ``index`` of a (valid) JSON array starts.

    Only called on the error path: a second pass is cheaper than tracking positions for
    every element of a well-formed output.
    """
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    for _ in range(index):
        position = _skip_space(text, position)
        _, position = decoder.raw_decode(text, position)
        position = _skip_space(text, position) + 1  # the comma
    return text.count("\n", 0, _skip_space(text, position)) + 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _parse_jsonl(text: str, model_filename: str | None) -> list[BenchResult]:
    results = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()  # as parse_jsonl_line does, the text being checked already
        if stripped.startswith("{"):
            results.append(_jsonl_result(stripped, model_filename, number))
    return results


# --- text columns (csv, sql, md) ----------------------------------------------------


def _to_bool(text: str) -> bool:
    if text == "0":
        return False
    if text == "1":
        return True
    raise ValueError(f"expected 0 or 1, got {text!r}")


def _to_flash_attn(text: str) -> bool | int:
    # Older builds print a bool (0/1); a value outside it is a newer build's int.
    return text == "1" if text in {"0", "1"} else int(text)


def _to_str(text: str) -> str:
    return text


def _infer(text: str) -> object:
    """The type of an unknown text column: an int or a float if it reads as one."""
    if not text or text[-1:].isspace() or text[:1].isspace() or "_" in text:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    # Words such as "nan" or "infinity" stay text unless llama-bench would print them.
    return value if math.isfinite(value) or text.lower() in {"inf", "-inf", "nan", "-nan"} else text


def _text_converter(
    column: str, *, legacy: bool, declared: str | None = None
) -> Callable[[str], object]:
    """How to read a text cell of ``column``; ``legacy`` says the columns are an old build's."""
    if column == "flash_attn":
        return _to_flash_attn if legacy else int
    if column in _INT_FIELDS:
        return int
    if column in _BOOL_FIELDS:
        return _to_bool
    if column in _FLOAT_FIELDS:
        return float
    if column in _STR_FIELDS:
        return _to_str
    if declared == "INTEGER":
        return int
    if declared == "REAL":
        return float
    if declared == "TEXT":
        return _to_str
    return _infer


_Conversions = list[tuple[int, str, Callable[[str], object]]]


def _conversions(columns: list[str], converters: list[Callable[[str], object]]) -> _Conversions:
    """The columns whose text needs converting: (index, column, converter)."""
    return [
        (index, column, convert)
        for index, (column, convert) in enumerate(zip(columns, converters, strict=True))
        if convert is not _to_str
    ]


def _convert_row(
    columns: list[str], conversions: _Conversions, cells: list[str], line: int
) -> dict[str, object]:
    row: dict[str, object] = dict(zip(columns, cells, strict=True))
    for index, column, convert in conversions:
        try:
            row[column] = convert(cells[index])
        except ValueError:
            message = f"column {column!r}: bad value {cells[index]!r}"
            raise BenchParseError(message, line=line) from None
    return row


def _check_columns(columns: list[str], line: int) -> None:
    if len(set(columns)) != len(columns):
        raise BenchParseError(f"duplicate columns in {columns}", line=line)
    missing = [column for column in _REQUIRED if column not in columns]
    if missing:
        raise BenchParseError(f"missing columns {missing}", line=line)


def _parse_csv(text: str, model_filename: str | None) -> list[BenchResult]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: list[str] | None = None
    conversions: _Conversions = []
    results = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if columns is None:
                columns = [cell.strip() for cell in cells]
                _check_columns(columns, line)
                legacy = "use_mmap" in columns
                conversions = _conversions(
                    columns, [_text_converter(column, legacy=legacy) for column in columns]
                )
                continue
            if len(cells) != len(columns):
                raise BenchParseError(
                    f"expected {len(columns)} fields, found {len(cells)}", line=line
                )
            row = _convert_row(columns, conversions, cells, line)
            results.append(_typed_result(row, model_filename, line))
    except csv.Error as exc:
        raise BenchParseError(f"invalid CSV: {exc}", line=reader.line_num or 1) from None
    if columns is None:
        raise BenchParseError("no CSV header line", line=1)
    return results


def _parse_sql(text: str, model_filename: str | None) -> list[BenchResult]:
    declared: dict[str, str] = {}
    column_text: str | None = None
    columns: list[str] = []
    conversions: _Conversions = []
    in_create = False
    seen_statement = False
    results = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if in_create:
            if line.startswith(")"):
                in_create = False
                continue
            parts = line.rstrip(",").split()
            if len(parts) < 2:
                raise BenchParseError(f"expected 'column TYPE', got {line!r}", line=number)
            declared[parts[0]] = parts[1].upper()
            continue
        if _SQL_CREATE.match(line):
            in_create = seen_statement = True
            declared.clear()
            column_text = None
            continue
        match = _SQL_INSERT.fullmatch(line)
        if match is None:
            raise BenchParseError(
                f"expected CREATE TABLE or INSERT, got {line[:80]!r}", line=number
            )
        seen_statement = True
        if match["columns"] != column_text:  # every INSERT repeats the same columns
            column_text = match["columns"]
            columns = [column.strip() for column in column_text.split(",")]
            _check_columns(columns, number)
            legacy = "use_mmap" in columns
            conversions = _conversions(
                columns,
                [
                    _text_converter(column, legacy=legacy, declared=declared.get(column))
                    for column in columns
                ],
            )
        cells = _sql_values(match["values"], len(columns), number)
        row = _convert_row(columns, conversions, cells, number)
        results.append(_typed_result(row, model_filename, number))
    if in_create:
        raise BenchParseError("CREATE TABLE is not closed", line=text.count("\n") + 1)
    if not seen_statement:
        raise BenchParseError("no CREATE TABLE or INSERT statement", line=1)
    return results


def _sql_values(text: str, count: int, line: int) -> list[str]:
    """The values of an INSERT, as llama-bench writes them: quoted, never escaped."""
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        cells = text[1:-1].split("', '")
        if len(cells) == count:
            return cells
    # Not llama-bench's shape: read standard SQL literals ('it''s', NULL, 42).
    cells = []
    position = 0
    while position < len(text):
        match = _SQL_LITERAL.match(text, position)
        if match is None:
            raise BenchParseError(f"cannot read SQL values at {text[position:][:40]!r}", line=line)
        if match["text"] is not None:
            cells.append(match["text"].replace("''", "'"))
        else:
            cells.append("" if match["null"] else match["bare"])
        position = match.end()
        if position < len(text):
            if text[position] != ",":
                raise BenchParseError(
                    f"cannot read SQL values at {text[position:][:40]!r}", line=line
                )
            position += 1
    if len(cells) != count:
        raise BenchParseError(f"expected {count} values, found {len(cells)}", line=line)
    return cells


def _md_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line[1:-1].split("|")]


def _parse_md(text: str, model_filename: str | None) -> list[BenchResult]:
    lines = [line.strip() for line in text.split("\n")]
    # Rows are collected first: the build footer comes after them.
    tables: list[tuple[list[tuple[int, dict[str, object]]], dict[str, object]]] = []
    columns: list[str] = []
    conversions: _Conversions = []
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.startswith("|"):
            footer = _MD_FOOTER.fullmatch(line)
            if footer is not None and tables:
                tables[-1][1].update(
                    build_commit=footer["commit"],
                    build_number=_md_int(footer["number"], "build number", number),
                )
            continue  # noise: warnings, blank lines, the footer
        if number < len(lines) and _MD_SEPARATOR.fullmatch(lines[number]):
            if not line.endswith("|") or len(line) < 2:
                raise BenchParseError("malformed table header", line=number)
            titles = _md_cells(line)
            columns = [_MD_COLUMNS.get(title, title) for title in titles]
            if len(set(columns)) != len(columns) or "test" not in columns or "t/s" not in columns:
                raise BenchParseError(f"table header lacks 'test' or 't/s': {titles}", line=number)
            legacy = "use_mmap" in columns
            conversions = _conversions(
                columns, [_md_converter(column, legacy=legacy) for column in columns]
            )
            tables.append(([], {}))
            number += 1  # the separator line
            continue
        if not tables:
            continue  # a table-like line before any table head: noise
        if not line.endswith("|") or len(line) < 2:
            raise BenchParseError("table row does not end with '|'", line=number)
        cells = _md_cells(line)
        if len(cells) != len(columns):
            raise BenchParseError(f"expected {len(columns)} cells, found {len(cells)}", line=number)
        tables[-1][0].append((number, _convert_row(columns, conversions, cells, number)))
    if not tables:
        raise BenchParseError("no llama-bench markdown table found", line=1)
    return [
        _md_result(row, build, model_filename, line) for rows, build in tables for line, row in rows
    ]


def _md_int(text: str, what: str, line: int) -> int:
    try:
        return int(text)
    except ValueError:  # only a number over Python's int digit limit gets here
        limit = sys.get_int_max_str_digits()
        message = f"{what} has {len(text)} digits, over Python's limit of {limit}"
        raise BenchParseError(message, line=line) from None


def _md_converter(column: str, *, legacy: bool) -> Callable[[str], object]:
    if column in {"size", "params", "test", "t/s"}:
        return _to_str
    return _text_converter(column, legacy=legacy)


def _md_result(
    row: dict[str, object], build: Mapping[str, object], model_filename: str | None, line: int
) -> BenchResult:
    test = str(row.pop("test"))
    speed = str(row.pop("t/s"))
    name = _TEST_NAME.fullmatch(test)
    if name is None:
        raise BenchParseError(f"unknown test name {test!r}", line=line)
    n_prompt = _md_int(name["pp"] or name["p"] or "0", "test size", line)
    n_gen = _md_int(name["tg"] or name["g"] or "0", "test size", line)
    n_depth = _md_int(name["d"] or "0", "test depth", line)
    avg_text, _, stddev_text = speed.partition("±")
    try:
        avg_ts, stddev_ts = float(avg_text), float(stddev_text)
    except ValueError:
        raise BenchParseError(f"expected 'avg ± stddev' in t/s, got {speed!r}", line=line) from None
    params = {**row, "test": test, "avg_ts": avg_ts, "stddev_ts": stddev_ts}
    model_type = row.get("model_type")
    backends = row.get("backends")
    build_commit = build.get("build_commit")
    build_number = build.get("build_number")
    return BenchResult(
        model_filename=model_filename,
        model_type=model_type if isinstance(model_type, str) else None,
        test=test,
        n_prompt=n_prompt,
        n_gen=n_gen,
        n_depth=n_depth,
        avg_ts=avg_ts,
        stddev_ts=stddev_ts,
        build_commit=build_commit if isinstance(build_commit, str) else None,
        build_number=build_number if isinstance(build_number, int) else None,
        backends=backends if isinstance(backends, str) else None,
        params=params,
    )
