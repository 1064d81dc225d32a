"""Render results the way llama-bench prints them: the oracle of the parser's tests.

Written from llama-bench's printers (``tools/llama-bench/llama-bench.cpp``: ``test``,
``csv_printer``, ``json_printer``, ``jsonl_printer``, ``markdown_printer``,
``sql_printer``) of both generations, and checked against their real output: the tests
render the captured JSON rows back and compare with the captured files byte for byte.

It is deliberately independent of ``llamaswitch.bench.parser``: it knows nothing of
parsing and shares no code with it. It reproduces llama-bench's quirks too: the JSON
escaper garbles every byte of a non-ASCII character into ``\\uffff`` + ``f`` (a signed
``char`` printed with ``%04x`` into an 8-byte buffer), sql values are never escaped, and
markdown cells are padded by bytes, not characters.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import attrs

STRING, BOOL, INT, FLOAT = "STRING", "BOOL", "INT", "FLOAT"


@attrs.frozen
class Generation:
    """What one llama.cpp generation's llama-bench prints: columns, types, md layout."""

    name: str
    fields: tuple[str, ...]
    types: Mapping[str, str]  # field -> STRING / BOOL / INT / FLOAT (default STRING)
    sql_table: str
    md_widths: Mapping[str, int]  # get_field_width's special cases
    md_titles: Mapping[str, str]  # get_field_display_name
    md_optional: tuple[str, ...]  # markdown_printer::print_header's order after "backend"
    cpu_backends: tuple[str, ...]  # backends for which the table shows threads, not ngl

    def field_type(self, field: str) -> str:
        """``test::get_field_type``."""
        return self.types.get(field, STRING)

    def with_extra_fields(self, extra: Mapping[str, str], *, at: int | None = None) -> Generation:
        """A future generation: this one plus ``extra`` columns (name -> type) at ``at``.

        The markdown table can show the new columns, after the known optional ones.
        """
        position = len(self.fields) if at is None else at
        return attrs.evolve(
            self,
            name=f"{self.name}+",
            fields=(*self.fields[:position], *extra, *self.fields[position:]),
            types={**self.types, **extra},
            md_optional=(*self.md_optional, *extra),
        )


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _types(ints: str, bools: str, floats: str) -> dict[str, str]:
    types = dict.fromkeys(ints.split(), INT)
    types.update(dict.fromkeys(bools.split(), BOOL))
    types.update(dict.fromkeys(floats.split(), FLOAT))
    return types


LEGACY = Generation(
    name="legacy",
    fields=_names(
        """build_commit build_number cpu_info gpu_info backends model_filename model_type
        model_size model_n_params n_batch n_ubatch n_threads cpu_mask cpu_strict poll type_k
        type_v n_gpu_layers split_mode main_gpu no_kv_offload flash_attn tensor_split
        tensor_buft_overrides use_mmap embeddings n_prompt n_gen n_depth test_time avg_ns
        stddev_ns avg_ts stddev_ts"""
    ),
    types=_types(
        ints="""build_number n_batch n_ubatch n_threads poll model_size model_n_params
        n_gpu_layers main_gpu n_prompt n_gen n_depth avg_ns stddev_ns""",
        bools="f16_kv no_kv_offload cpu_strict flash_attn use_mmap embeddings",
        floats="avg_ts stddev_ts",
    ),
    sql_table="test",
    md_widths={
        "model": -30, "t/s": 20, "size": 10, "params": 10, "n_gpu_layers": 3, "n_threads": 7,
        "n_batch": 7, "n_ubatch": 8, "type_k": 6, "type_v": 6, "split_mode": 5,
        "flash_attn": 2, "use_mmap": 4, "test": 15,
    },
    md_titles={
        "n_gpu_layers": "ngl", "split_mode": "sm", "n_threads": "threads",
        "no_kv_offload": "nkvo", "flash_attn": "fa", "use_mmap": "mmap", "embeddings": "embd",
        "tensor_split": "ts", "tensor_buft_overrides": "ot",
    },
    md_optional=_names(
        """n_gpu_layers n_threads cpu_mask cpu_strict poll n_batch n_ubatch type_k type_v
        main_gpu split_mode no_kv_offload flash_attn tensor_split tensor_buft_overrides
        use_mmap embeddings"""
    ),
    cpu_backends=("CPU", "BLAS"),
)  # fmt: skip

CURRENT = Generation(
    name="current",
    fields=_names(
        """build_commit build_number cpu_info gpu_info backends model_filename model_type
        model_size model_n_params n_batch n_ubatch n_threads cpu_mask cpu_strict poll type_k
        type_v n_gpu_layers n_cpu_moe split_mode main_gpu no_kv_offload flash_attn devices
        tensor_split tensor_buft_overrides load_mode lazy_mode embeddings no_op_offload
        no_host repack fit_target fit_min_ctx n_prompt n_gen n_depth test_time avg_ns
        stddev_ns avg_ts stddev_ts"""
    ),
    types=_types(
        ints="""build_number n_batch n_ubatch n_threads poll model_size model_n_params
        n_gpu_layers main_gpu n_prompt n_gen n_depth avg_ns stddev_ns no_op_offload n_cpu_moe
        fit_target fit_min_ctx flash_attn""",
        bools="f16_kv no_kv_offload cpu_strict embeddings no_host repack",
        floats="avg_ts stddev_ts",
    ),
    sql_table="llama_bench",
    md_widths={
        "model": -30, "t/s": 20, "size": 10, "params": 10, "n_gpu_layers": 3, "n_threads": 7,
        "n_batch": 7, "n_ubatch": 8, "type_k": 6, "type_v": 6, "split_mode": 6,
        "load_mode": 10, "flash_attn": 3, "devices": -12, "test": 15, "no_op_offload": 4,
        "no_host": 4, "repack": 3,
    },
    md_titles={
        "n_gpu_layers": "ngl", "split_mode": "sm", "n_threads": "threads",
        "no_kv_offload": "nkvo", "flash_attn": "fa", "load_mode": "lm", "embeddings": "embd",
        "no_op_offload": "nopo", "no_host": "noh", "repack": "rpk", "devices": "dev",
        "tensor_split": "ts", "tensor_buft_overrides": "ot", "fit_target": "fitt",
        "fit_min_ctx": "fitc",
    },
    md_optional=_names(
        """n_gpu_layers n_cpu_moe n_threads cpu_mask cpu_strict poll n_batch n_ubatch type_k
        type_v main_gpu split_mode no_kv_offload flash_attn devices tensor_split
        tensor_buft_overrides load_mode lazy_mode embeddings no_op_offload no_host repack
        fit_target fit_min_ctx"""
    ),
    cpu_backends=("CPU", "BLAS", "ZenDNN"),
)  # fmt: skip

GENERATIONS = {"legacy": LEGACY, "current": CURRENT}


@attrs.frozen
class Row:
    """One test's result as llama-bench holds it before printing.

    ``values`` has a typed value (str, int, bool, float) for every field of the
    generation; ``samples_ts`` are printed only by json and jsonl.
    """

    values: Mapping[str, object]
    samples_ns: tuple[int, ...] = ()
    samples_ts: tuple[float, ...] = ()


def text_value(value: object) -> str:
    """``test::get_values``: std::to_string of ints, bools and doubles, strings as they are."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _c_double(value, "%f")
    assert isinstance(value, str), value
    return value


def _c_double(value: float, spec: str) -> str:
    """printf of a double: glibc writes inf, -inf, nan and -nan."""
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    return spec % value


def escape_json(text: str) -> str:
    """llama-bench's ``escape_json``, byte by byte over UTF-8 with a signed ``char``."""
    out = []
    for byte in text.encode("utf-8"):
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif byte <= 0x1F:
            out.append(f"\\u{byte:04x}")
        elif byte >= 0x80:
            # snprintf(buf, 8, "\\u%04x", (int)(signed char)byte) keeps 7 of "\uffffffXX".
            out.append("\\ufffff")
        else:
            out.append(chr(byte))
    return "".join(out)


def garble_json(text: str) -> str:
    """What a JSON reader gets back for ``text`` after llama-bench's escaper."""
    return "".join(
        char if ord(char) < 0x80 else ("\uffff" + "f") * len(char.encode("utf-8")) for char in text
    )


def _json_value(generation: Generation, field: str, value: object) -> str:
    """``format_json_value``."""
    text = text_value(value)
    kind = generation.field_type(field)
    if kind == STRING:
        return f'"{escape_json(text)}"'
    if kind == BOOL:
        return "false" if text == "0" else "true"
    return text


def _samples(row: Row) -> tuple[str, str]:
    # std::ostream's default float format is printf's %g.
    return (
        ", ".join(str(sample) for sample in row.samples_ns),
        ", ".join(_c_double(sample, "%g") for sample in row.samples_ts),
    )


def render_json(generation: Generation, rows: Sequence[Row]) -> str:
    """``json_printer``."""
    parts = ["[\n"]
    for index, row in enumerate(rows):
        if index:
            parts.append(",\n")
        parts.append("  {\n")
        for field in generation.fields:
            value = _json_value(generation, field, row.values[field])
            parts.append(f'    "{field}": {value},\n')
        samples_ns, samples_ts = _samples(row)
        parts.append(f'    "samples_ns": [ {samples_ns} ],\n')
        parts.append(f'    "samples_ts": [ {samples_ts} ]\n')
        parts.append("  }")
    parts.append("\n]\n")
    return "".join(parts)


def render_jsonl(generation: Generation, rows: Sequence[Row]) -> str:
    """``jsonl_printer``."""
    lines = []
    for row in rows:
        fields = "".join(
            f'"{field}": {_json_value(generation, field, row.values[field])}, '
            for field in generation.fields
        )
        samples_ns, samples_ts = _samples(row)
        lines.append(f'{{{fields}"samples_ns": [ {samples_ns} ],"samples_ts": [ {samples_ts} ]}}\n')
    return "".join(lines)


def render_csv(generation: Generation, rows: Sequence[Row]) -> str:
    """``csv_printer``: an unquoted header, every value quoted, quotes doubled."""
    lines = [",".join(generation.fields) + "\n"]
    for row in rows:
        cells = (
            '"' + text_value(row.values[field]).replace('"', '""') + '"'
            for field in generation.fields
        )
        lines.append(",".join(cells) + "\n")
    return "".join(lines)


def render_sql(generation: Generation, rows: Sequence[Row]) -> str:
    """``sql_printer``: values quoted with ``'`` and never escaped."""
    sql_types = {STRING: "TEXT", BOOL: "INTEGER", INT: "INTEGER", FLOAT: "REAL"}
    lines = [f"CREATE TABLE IF NOT EXISTS {generation.sql_table} (\n"]
    for index, field in enumerate(generation.fields):
        comma = "," if index < len(generation.fields) - 1 else ""
        lines.append(f"  {field} {sql_types[generation.field_type(field)]}{comma}\n")
    lines.append(");\n\n")
    columns = ", ".join(generation.fields)
    for row in rows:
        values = ", ".join(f"'{text_value(row.values[field])}'" for field in generation.fields)
        insert = f"INSERT INTO {generation.sql_table} ({columns}) VALUES ({values});\n"  # noqa: S608 - printing, not querying
        lines.append(insert)
    return "".join(lines)


def test_name(n_prompt: int, n_gen: int, n_depth: int) -> str:
    """The ``test`` cell of ``markdown_printer::print_test``."""
    if n_prompt > 0 and n_gen == 0:
        name = f"pp{n_prompt}"
    elif n_gen > 0 and n_prompt == 0:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}+tg{n_gen}"
    if n_depth > 0:
        name += f" @ d{n_depth}"
    return name


def md_columns(generation: Generation, backends: str, shown: Collection[str]) -> list[str]:
    """The table's fields: the fixed ones, and the optional ones in llama-bench's order.

    ``shown`` names the optional fields whose command-line value was a list or not the
    default; ``n_threads`` is always shown for a CPU backend and ``n_gpu_layers`` for any
    other.
    """
    is_cpu = any(name in backends for name in generation.cpu_backends)
    optional = [
        field
        for field in generation.md_optional
        if (field == "n_gpu_layers" and not is_cpu)
        or (field == "n_threads" and is_cpu)
        or (field in shown and field != "n_gpu_layers")
    ]
    return ["model", "size", "params", "backend", *optional, "test", "t/s"]


def md_width(generation: Generation, field: str) -> int:
    """``get_field_width``: negative means left-aligned."""
    if field in generation.md_widths:
        return generation.md_widths[field]
    width = max(len(field), 10)
    return -width if generation.field_type(field) == STRING else width


def _pad(text: str, width: int) -> str:
    """printf's ``%*s``, which counts bytes, not characters."""
    fill = " " * max(0, abs(width) - len(text.encode("utf-8")))
    return text + fill if width < 0 else fill + text


def md_cell(row: Row, field: str) -> str:
    """A cell of ``markdown_printer::print_test``."""
    values = row.values
    if field == "model":
        return text_value(values["model_type"])
    if field == "size":
        size = values["model_size"]
        assert isinstance(size, int)
        if size < 1024 * 1024 * 1024:
            return "%.2f MiB" % (size / 1024.0 / 1024.0)
        return "%.2f GiB" % (size / 1024.0 / 1024.0 / 1024.0)
    if field == "params":
        n_params = values["model_n_params"]
        assert isinstance(n_params, int)
        if n_params < 1000 * 1000 * 1000:
            return "%.2f M" % (n_params / 1e6)
        return "%.2f B" % (n_params / 1e9)
    if field == "backend":
        return text_value(values["backends"])
    if field == "test":
        n_prompt, n_gen, n_depth = values["n_prompt"], values["n_gen"], values["n_depth"]
        assert isinstance(n_prompt, int)
        assert isinstance(n_gen, int)
        assert isinstance(n_depth, int)
        return test_name(n_prompt, n_gen, n_depth)
    if field == "t/s":
        avg, stddev = values["avg_ts"], values["stddev_ts"]
        assert isinstance(avg, float)
        assert isinstance(stddev, float)
        return f"{_c_double(avg, '%.2f')} ± {_c_double(stddev, '%.2f')}"
    return text_value(values[field])


def render_md(
    generation: Generation,
    rows: Sequence[Row],
    *,
    shown: Collection[str] = (),
    backends: str = "CPU",
    build: tuple[str, int] = ("unknown", 0),
) -> str:
    """``markdown_printer``. ``backends`` and ``build`` are the binary's, not a row's."""
    columns = md_columns(generation, backends, shown)
    widths = [md_width(generation, field) for field in columns]
    # The "±" is two bytes; llama-bench widens its column by one to make up for it.
    cell_widths = [
        width + 1 if field == "t/s" else width for field, width in zip(columns, widths, strict=True)
    ]
    titles = [generation.md_titles.get(field, field) for field in columns]
    lines = [
        "|"
        + "".join(f" {_pad(title, width)} |" for title, width in zip(titles, widths, strict=True))
    ]
    lines.append(
        "|" + "".join(f" {'-' * (abs(width) - 1)}{':' if width > 0 else '-'} |" for width in widths)
    )
    for row in rows:
        cells = (md_cell(row, field) for field in columns)
        lines.append(
            "|"
            + "".join(
                f" {_pad(cell, width)} |" for cell, width in zip(cells, cell_widths, strict=True)
            )
        )
    return "\n".join(lines) + f"\n\nbuild: {build[0]} ({build[1]})\n"


def render(
    fmt: str,
    generation: Generation,
    rows: Sequence[Row],
    *,
    shown: Collection[str] = (),
    backends: str = "CPU",
    build: tuple[str, int] = ("unknown", 0),
) -> str:
    """Render ``rows`` in ``fmt`` (md, csv, json, jsonl or sql) as llama-bench would."""
    if fmt == "md":
        return render_md(generation, rows, shown=shown, backends=backends, build=build)
    renderers = {"csv": render_csv, "json": render_json, "jsonl": render_jsonl, "sql": render_sql}
    return renderers[fmt](generation, rows)
