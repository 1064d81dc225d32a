"""The llama-bench output parser, on real captured output of both llama.cpp generations.

``tests/data/bench/{legacy,current}/`` holds real output (``capture.py`` there refreshes
it): ``CASE.json`` and ``CASE.jsonl`` come from one run, and each ``CASE.F`` (F = md, csv,
sql) has the JSON of its own run beside it in ``CASE.F.json``, so every format can be
checked against the very same measurements. ``bench_render`` is the oracle for the
property tests: it prints results exactly as llama-bench does (checked here against the
captured files byte for byte).
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch._errors import BenchParseError
from llamaswitch.bench.parser import (
    BENCH_OUTPUT_FORMATS,
    BenchResult,
    bench_test_name,
    parse_bench_output,
    parse_jsonl_line,
    parse_progress_line,
)

from .bench_render import (
    BOOL,
    CURRENT,
    FLOAT,
    GENERATIONS,
    INT,
    LEGACY,
    Generation,
    Row,
    garble_json,
    md_cell,
    md_columns,
    render,
)

DATA = Path(__file__).parent / "data" / "bench"
CASES = ("plain", "sweep", "pg", "depth", "options")
# The optional md columns each generation's "options" case shows (capture.py's flags).
OPTIONS_SHOWN = {
    "legacy": {"n_batch", "n_ubatch", "no_kv_offload", "flash_attn", "use_mmap"},
    "current": {
        "n_cpu_moe", "n_batch", "n_ubatch", "no_kv_offload", "flash_attn", "load_mode", "repack",
    },
}  # fmt: skip
TEXT_ONLY = ("samples_ns", "samples_ts")  # what json carries and csv/sql do not
GENERATION_CASES = [(generation, case) for generation in GENERATIONS for case in CASES]


def captured(generation: str, name: str) -> str:
    """A captured output file, read as llama-bench wrote it (no newline translation)."""
    return (DATA / generation / name).read_bytes().decode("utf-8")


def parsed(generation: str, name: str, fmt: str, **kwargs: Any) -> list[BenchResult]:
    """A captured output file, parsed."""
    return parse_bench_output(captured(generation, name), fmt, **kwargs)


def oracle_rows(json_text: str) -> list[Row]:
    """Rows for the oracle, read from llama-bench's JSON with the json module alone."""
    return [
        Row(
            values={key: value for key, value in item.items() if key not in TEXT_ONLY},
            samples_ns=tuple(item["samples_ns"]),
            samples_ts=tuple(float(sample) for sample in item["samples_ts"]),
        )
        for item in json.loads(json_text)
    ]


def without(result: BenchResult, *keys: str) -> dict[str, object]:
    """A result's fields, less some (samples, which only JSON carries)."""
    fields = attrs.asdict(result, recurse=False)
    fields["params"] = {k: v for k, v in result.params.items() if k not in keys}
    for key in keys:
        fields.pop(key, None)
    return fields


# --- captured real output ---------------------------------------------------------------


@pytest.mark.parametrize(("generation", "case"), GENERATION_CASES)
@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_every_captured_format_parses_to_the_tests_llama_bench_ran(
    generation: str, case: str, fmt: str
) -> None:
    name = f"{case}.{fmt}"
    reference = f"{case}.json" if fmt in {"json", "jsonl"} else f"{name}.json"
    expected_tests = [item["n_prompt"] for item in json.loads(captured(generation, reference))]

    results = parsed(generation, name, fmt)

    assert [result.n_prompt for result in results] == expected_tests
    assert all(result.avg_ts > 0 for result in results)


@pytest.mark.parametrize(("generation", "case"), GENERATION_CASES)
def test_jsonl_carries_exactly_what_json_carries(generation: str, case: str) -> None:
    # json and jsonl of one run (stdout and -oe stderr).
    assert parsed(generation, f"{case}.jsonl", "jsonl") == parsed(
        generation, f"{case}.json", "json"
    )


@pytest.mark.parametrize(("generation", "case"), GENERATION_CASES)
@pytest.mark.parametrize("fmt", ["csv", "sql"])
def test_csv_and_sql_give_the_json_results_less_the_samples(
    generation: str, case: str, fmt: str
) -> None:
    from_text = parsed(generation, f"{case}.{fmt}", fmt)
    from_json = parsed(generation, f"{case}.{fmt}.json", "json")

    assert [without(result, *TEXT_ONLY) for result in from_text] == [
        without(result, *TEXT_ONLY) for result in from_json
    ]
    assert all(result.samples_ns is None for result in from_text)


@pytest.mark.parametrize(("generation", "case"), GENERATION_CASES)
def test_csv_and_sql_keep_the_json_types_of_every_column(generation: str, case: str) -> None:
    # == would let True pass for 1; the types must match too (flash_attn above all).
    [from_json, *_] = parsed(generation, f"{case}.csv.json", "json")
    [from_csv, *_] = parsed(generation, f"{case}.csv", "csv")
    [from_sql, *_] = parsed(generation, f"{case}.sql", "sql")

    json_types = {key: type(value) for key, value in from_json.params.items()}
    for key in TEXT_ONLY:
        del json_types[key]
    assert {key: type(value) for key, value in from_csv.params.items()} == json_types
    assert {key: type(value) for key, value in from_sql.params.items()} == json_types


@pytest.mark.parametrize(("generation", "case"), GENERATION_CASES)
def test_md_gives_the_json_tests_and_speeds_to_the_printed_two_decimals(
    generation: str, case: str
) -> None:
    from_md = parsed(generation, f"{case}.md", "md")
    from_json = parsed(generation, f"{case}.md.json", "json")

    assert [r.test for r in from_md] == [r.test for r in from_json]
    assert [(r.n_prompt, r.n_gen, r.n_depth) for r in from_md] == [
        (r.n_prompt, r.n_gen, r.n_depth) for r in from_json
    ]
    for md, js in zip(from_md, from_json, strict=True):
        assert md.avg_ts == pytest.approx(js.avg_ts, abs=0.005)
        assert md.stddev_ts == pytest.approx(js.stddev_ts, abs=0.005)
        assert (md.model_type, md.backends, md.build_commit, md.build_number) == (
            js.model_type,
            js.backends,
            js.build_commit,
            js.build_number,
        )
        assert md.params["n_threads"] == js.params["n_threads"]


@pytest.mark.parametrize("generation", GENERATIONS)
def test_md_maps_column_titles_to_json_names(generation: str) -> None:
    [md, *_] = parsed(generation, "options.md", "md")
    [js, *_] = parsed(generation, "options.md.json", "json")

    mapped = set(md.params) - {"size", "params", "test", "avg_ts", "stddev_ts"}
    assert {key: md.params[key] for key in mapped} == {key: js.params[key] for key in mapped}
    assert {"n_threads", "n_batch", "n_ubatch", "no_kv_offload", "flash_attn"} <= mapped


@pytest.mark.parametrize("generation", GENERATIONS)
def test_md_keeps_size_and_parameter_count_as_the_rounded_text(generation: str) -> None:
    [result, *_] = parsed(generation, "plain.md", "md")

    assert (result.model_size, result.model_n_params) == (None, None)
    assert (result.params["size"], result.params["params"]) == ("0.45 MiB", "0.12 M")


@pytest.mark.parametrize("generation", GENERATIONS)
def test_md_rows_carry_no_model_file_unless_given_one(generation: str) -> None:
    plain = parsed(generation, "plain.md", "md")
    filled = parsed(generation, "plain.md", "md", model_filename="/models/tiny.gguf")

    assert {r.model_filename for r in plain} == {None}
    assert {r.model_filename for r in filled} == {"/models/tiny.gguf"}


@pytest.mark.parametrize("generation", GENERATIONS)
def test_model_filename_does_not_override_the_one_the_output_names(generation: str) -> None:
    results = parsed(generation, "plain.json", "json", model_filename="/elsewhere.gguf")

    assert {r.model_filename for r in results} == {"/models/tiny.gguf"}


@pytest.mark.parametrize("generation", GENERATIONS)
def test_a_sweep_gives_one_row_per_combination_in_llama_bench_order(generation: str) -> None:
    results = parsed(generation, "sweep.json", "json")

    assert [(r.params["n_threads"], r.test) for r in results] == [
        (1, "pp16"), (1, "pp32"), (1, "tg8"), (2, "pp16"), (2, "pp32"), (2, "tg8"),
    ]  # fmt: skip


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_a_combined_test_is_named_pp_plus_tg(generation: str, fmt: str) -> None:
    name = "pg.json" if fmt == "json" else f"pg.{fmt}"

    results = parsed(generation, name, fmt)

    assert [r.test for r in results] == ["pp16", "tg8", "pp16+tg8"]
    assert (results[2].n_prompt, results[2].n_gen) == (16, 8)


@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_a_depth_run_is_named_at_its_depth(generation: str, fmt: str) -> None:
    results = parsed(generation, f"depth.{fmt}", fmt)

    assert [r.test for r in results] == ["pp16 @ d16", "tg8 @ d16"]
    assert {r.n_depth for r in results} == {16}


@pytest.mark.parametrize(
    ("n_prompt", "n_gen", "n_depth", "name"),
    [
        (512, 0, 0, "pp512"),
        (0, 128, 0, "tg128"),
        (512, 128, 0, "pp512+tg128"),
        (512, 0, 4096, "pp512 @ d4096"),
        (0, 0, 0, "pp0+tg0"),
    ],
)
def test_test_names_follow_llama_bench(n_prompt: int, n_gen: int, n_depth: int, name: str) -> None:
    assert bench_test_name(n_prompt, n_gen, n_depth) == name


@pytest.mark.parametrize("fmt", ["json", "csv", "sql"])
def test_legacy_builds_report_flash_attention_as_a_bool_and_mmap(fmt: str) -> None:
    results = parsed("legacy", f"options.{fmt}", fmt)

    assert [r.params["flash_attn"] for r in results] == [False, True]
    assert all(type(r.params["flash_attn"]) is bool for r in results)
    assert results[0].params["use_mmap"] is False
    assert "load_mode" not in results[0].params


@pytest.mark.parametrize("fmt", ["json", "csv", "sql"])
def test_current_builds_report_flash_attention_as_an_int_and_a_load_mode(fmt: str) -> None:
    results = parsed("current", f"options.{fmt}", fmt)

    assert [r.params["flash_attn"] for r in results] == [1, 0]
    assert all(type(r.params["flash_attn"]) is int for r in results)
    assert results[0].params["load_mode"] == "none"
    assert "use_mmap" not in results[0].params


def test_current_builds_add_columns_that_legacy_ones_lack() -> None:
    [legacy] = parsed("legacy", "plain.json", "json")[:1]
    [current] = parsed("current", "plain.json", "json")[:1]

    assert set(current.params) - set(legacy.params) == {
        "n_cpu_moe", "devices", "load_mode", "lazy_mode", "no_op_offload", "no_host", "repack",
        "fit_target", "fit_min_ctx",
    }  # fmt: skip
    assert set(legacy.params) - set(current.params) == {"use_mmap"}


@pytest.mark.parametrize("generation", GENERATIONS)
def test_progress_stderr_yields_progress_lines_and_results(generation: str) -> None:
    lines = captured(generation, "progress.stderr").splitlines()

    progress = [parse_progress_line(line) for line in lines]
    results = [parse_jsonl_line(line) for line in lines]

    assert [p for p in progress if p is not None][:3] == [
        (1, 2, "starting"),
        (1, 2, "warmup prompt run"),
        (1, 2, "prompt run 1/2"),
    ]
    assert [r.test for r in results if r is not None] == ["pp16", "tg8"]
    assert all((p is None) != (r is None) for p, r in zip(progress, results, strict=True))


@pytest.mark.parametrize("generation", GENERATIONS)
def test_jsonl_skips_the_progress_lines_mixed_into_stderr(generation: str) -> None:
    results = parsed(generation, "progress.stderr", "jsonl")

    assert [r.test for r in results] == ["pp16", "tg8"]


# --- the oracle against reality ---------------------------------------------------------


@pytest.mark.parametrize(("generation", "case"), GENERATION_CASES)
@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_the_oracle_prints_real_results_byte_for_byte_as_llama_bench_did(
    generation: str, case: str, fmt: str
) -> None:
    source = f"{case}.json" if fmt in {"json", "jsonl"} else f"{case}.{fmt}.json"
    rows = oracle_rows(captured(generation, source))
    first = rows[0].values
    build = (str(first["build_commit"]), int(str(first["build_number"])))
    shown = OPTIONS_SHOWN[generation] if case == "options" else ()

    text = render(fmt, GENERATIONS[generation], rows, shown=shown, build=build)

    assert text == captured(generation, f"{case}.{fmt}")


# --- what llama-bench does not print cleanly -------------------------------------------


def test_md_tolerates_warnings_around_and_inside_the_table_and_crlf() -> None:
    clean = captured("current", "sweep.md")
    lines = clean.splitlines()
    warning = "warning: debug build, performance may be affected"
    noisy = "\r\n".join([warning, "", *lines[:4], "load: noise", *lines[4:], "trailing noise"])

    assert parse_bench_output(noisy, "md") == parse_bench_output(clean, "md")


def test_an_md_table_cut_short_by_a_failed_run_gives_the_rows_printed() -> None:
    # A failing test aborts llama-bench before the footer (seen with -ctk q8_0 on a model
    # whose head size is 16).
    lines = captured("current", "sweep.md").splitlines()

    results = parse_bench_output("\n".join(lines[:5]) + "\n", "md")

    assert [r.test for r in results] == ["pp16", "pp32", "tg8"]
    assert {r.build_commit for r in results} == {None}


def test_md_footer_gives_the_build() -> None:
    [result, *_] = parsed("legacy", "plain.md", "md")

    assert (result.build_commit, result.build_number) == ("8733e0c", 1)


@pytest.mark.parametrize("fmt", ["csv", "sql", "jsonl", "json"])
def test_blank_lines_and_crlf_change_nothing(fmt: str) -> None:
    clean = captured("legacy", f"sweep.{fmt}" if fmt != "json" else "sweep.json")
    noisy = "\r\n".join(line for text in clean.splitlines() for line in (text, ""))

    assert parse_bench_output(noisy, fmt) == parse_bench_output(clean, fmt)


def test_jsonl_skips_warning_lines() -> None:
    clean = captured("current", "sweep.jsonl")
    noisy = f"warning: something\n{clean}llama_bench: done\n"

    assert parse_bench_output(noisy, "jsonl") == parse_bench_output(clean, "jsonl")


@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_non_finite_speeds_printed_the_c_way_are_read(fmt: str) -> None:
    # printf writes inf and nan (or -nan), which JSON lacks; a zero-length sample gives them.
    row = oracle_rows(captured("current", "plain.json"))[0]
    row = attrs.evolve(row, values={**row.values, "avg_ts": math.inf, "stddev_ts": -math.nan})
    text = render(fmt, CURRENT, [row])
    assert "-nan" in text

    [first] = parse_bench_output(text, fmt)

    assert first.avg_ts == math.inf
    assert math.isnan(first.stddev_ts)


def test_a_non_ascii_model_path_garbled_by_json_is_replaced_by_the_given_one() -> None:
    row = oracle_rows(captured("legacy", "plain.json"))[0]
    row = attrs.evolve(row, values={**row.values, "model_filename": "/models/é.gguf"})
    text = render("json", LEGACY, [row])

    [garbled] = parse_bench_output(text, "json")
    [fixed] = parse_bench_output(text, "json", model_filename="/models/é.gguf")

    assert garbled.model_filename == "/models/\uffff" + "f\uffff" + "f.gguf"
    assert fixed.model_filename == "/models/é.gguf"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "sql", "md"])
def test_unknown_columns_are_kept_typed(fmt: str) -> None:
    future = CURRENT.with_extra_fields({"n_swa": INT, "mode_x": "STRING", "speed_x": FLOAT}, at=20)
    rows = [
        attrs.evolve(row, values={**row.values, "n_swa": 7, "mode_x": "fast", "speed_x": 1.5})
        for row in oracle_rows(captured("current", "plain.json"))
    ]
    shown = {"n_swa", "mode_x", "speed_x"}

    [result, *_] = parse_bench_output(render(fmt, future, rows, shown=shown), fmt)

    assert {key: result.params.get(key) for key in shown} == {
        "n_swa": 7, "mode_x": "fast", "speed_x": 1.5,
    }  # fmt: skip


# --- malformed output ------------------------------------------------------------------


def raises_at(text: str, fmt: str) -> BenchParseError:
    """The BenchParseError that parsing raises (and no other exception)."""
    with pytest.raises(BenchParseError) as caught:
        parse_bench_output(text, fmt)
    return caught.value


def test_truncated_json_names_the_line_where_it_ends() -> None:
    lines = captured("current", "plain.json").splitlines()

    error = raises_at("\n".join(lines[:50]), "json")

    assert error.line == 50
    assert "position" in str(error)


def test_a_json_result_without_its_test_sizes_names_the_object_line() -> None:
    results = json.loads(captured("current", "plain.json"))
    del results[1]["n_gen"]
    text = json.dumps(results, indent=2)

    error = raises_at(text, "json")

    second_object = [n for n, line in enumerate(text.splitlines()) if line == "  {"][1]
    assert error.line == second_object + 1
    assert "n_gen" in str(error)


def test_a_bad_result_after_a_c_style_infinity_still_names_its_line() -> None:
    rows = oracle_rows(captured("current", "plain.json"))
    rows[0] = attrs.evolve(rows[0], values={**rows[0].values, "avg_ts": math.inf})
    lines = render("json", CURRENT, rows).splitlines()
    del lines[max(n for n, line in enumerate(lines) if '"n_gen"' in line)]

    error = raises_at("\n".join(lines), "json")

    assert error.line == [n for n, line in enumerate(lines) if line == "  {"][1] + 1


def test_a_json_document_that_is_not_an_array_is_rejected() -> None:
    assert raises_at('{"n_prompt": 1}', "json").line == 1


def test_a_csv_row_missing_a_column_names_its_line() -> None:
    lines = captured("legacy", "sweep.csv").splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]

    error = raises_at("\n".join(lines), "csv")

    assert error.line == 3
    assert "expected 34 fields, found 33" in str(error)


def test_a_bad_number_in_csv_names_the_line_and_column() -> None:
    lines = captured("legacy", "sweep.csv").splitlines()
    lines[3] = lines[3].replace('"2048"', '"20x8"', 1)

    error = raises_at("\n".join(lines), "csv")

    assert error.line == 4
    assert "n_batch" in str(error)


def test_an_unterminated_csv_quote_is_reported() -> None:
    text = captured("legacy", "plain.csv")

    assert raises_at(text[: text.rindex('"')], "csv").line == 3


def test_a_csv_header_without_the_test_columns_is_rejected() -> None:
    error = raises_at("a,b,c\n1,2,3\n", "csv")

    assert error.line == 1
    assert "n_prompt" in str(error)


def test_a_bad_number_in_sql_names_the_line() -> None:
    text = captured("current", "plain.sql").replace("'512'", "'5l2'", 1)

    error = raises_at(text, "sql")

    first_insert = next(n for n, line in enumerate(text.splitlines()) if "INSERT" in line)
    assert error.line == first_insert + 1
    assert "n_ubatch" in str(error)


def test_an_sql_insert_with_a_missing_value_names_the_line() -> None:
    lines = captured("current", "plain.sql").splitlines()
    last = len(lines) - 1
    lines[last] = lines[last].replace("'0', ", "", 1)

    assert raises_at("\n".join(lines), "sql").line == last + 1


def test_a_markdown_row_with_a_missing_cell_names_the_line() -> None:
    lines = captured("legacy", "plain.md").splitlines()
    lines[3] = lines[3].replace("|       2 |", "|", 1)

    error = raises_at("\n".join(lines), "md")

    assert error.line == 4


def test_a_markdown_speed_that_is_not_avg_plus_minus_stddev_names_the_line() -> None:
    text = captured("legacy", "plain.md").replace(" ± ", " +- ", 1)

    assert raises_at(text, "md").line == 3


def test_a_jsonl_line_that_breaks_off_names_its_line() -> None:
    lines = captured("current", "sweep.jsonl").splitlines()
    lines[4] = lines[4][:100]

    assert raises_at("\n".join(lines), "jsonl").line == 5


def test_a_jsonl_object_that_is_no_result_names_its_line() -> None:
    lines = captured("current", "sweep.jsonl").splitlines()

    error = raises_at("\n".join([*lines[:2], '{"hello": 1}']), "jsonl")

    assert error.line == 3


# Python refuses to turn more than 4300 digits into an int (sys.get_int_max_str_digits).
TOO_MANY_DIGITS = "7" * 5000


@pytest.mark.parametrize(
    ("fmt", "old", "line"),
    [
        ("json", '"n_prompt": 16', 29),
        ("jsonl", '"n_prompt": 16', 1),
        ("md", "pp16", 3),
    ],
    ids=["json", "jsonl", "md"],
)
def test_a_number_over_pythons_digit_limit_names_its_line(fmt: str, old: str, line: int) -> None:
    text = captured("legacy", f"plain.{fmt}").replace(old, old.replace("16", TOO_MANY_DIGITS), 1)

    error = raises_at(text, fmt)

    assert error.line == line
    assert "5000 digits" in str(error)


def test_a_json_number_over_pythons_digit_limit_gives_its_position() -> None:
    text = captured("legacy", "plain.json").replace(
        '"n_prompt": 16', f'"n_prompt": {TOO_MANY_DIGITS}'
    )

    error = raises_at(text, "json")

    assert f"position {text.index(TOO_MANY_DIGITS)}" in str(error)


def test_an_md_build_number_over_pythons_digit_limit_names_the_footer_line() -> None:
    text = captured("legacy", "plain.md").replace("(1)", f"({TOO_MANY_DIGITS})")

    error = raises_at(text, "md")

    assert error.line == 6
    assert "build number" in str(error)


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "sql"])
def test_garbage_text_is_rejected_at_line_1(fmt: str) -> None:
    error = raises_at("Segmentation fault (core dumped)\nsomething else\n", fmt)

    assert error.line == 1


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "sql"])
def test_empty_output_is_an_error_where_a_header_was_due(fmt: str) -> None:
    assert raises_at("", fmt).line == 1


def test_empty_jsonl_output_holds_no_results() -> None:
    assert parse_bench_output("", "jsonl") == []


def test_an_unknown_format_is_a_value_error_naming_the_formats() -> None:
    with pytest.raises(ValueError, match="md, csv, json, jsonl, sql") as caught:
        parse_bench_output("", "yaml")
    assert not isinstance(caught.value, BenchParseError)


# --- the live helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("llama-bench: benchmark 1/2: prompt run 1/2", (1, 2, "prompt run 1/2")),
        (
            "llama-bench: benchmark 3/12: depth run 2/5 (cached)\r\n",
            (3, 12, "depth run 2/5 (cached)"),
        ),
        ("llama_bench: error: failed to load model 'x.gguf'", None),
        ("", None),
        (f"llama-bench: benchmark 1/{'9' * 5000}: prompt run 1/2", None),
    ],
    ids=["progress", "progress-crlf", "error", "blank", "count-over-pythons-digit-limit"],
)
def test_progress_lines_are_recognised(line: str, expected: tuple[int, int, str] | None) -> None:
    assert parse_progress_line(line) == expected


def test_a_jsonl_line_that_is_not_json_is_none() -> None:
    assert parse_jsonl_line("llama-bench: benchmark 1/2: starting") is None


def test_a_broken_jsonl_line_raises_with_the_line_number_given() -> None:
    with pytest.raises(BenchParseError) as caught:
        parse_jsonl_line('{"n_prompt": 1', line_number=7)
    assert caught.value.line == 7


# --- the wire format --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_to_dict_survives_json_and_from_dict(fmt: str) -> None:
    name = "sweep.json" if fmt == "json" else f"sweep.{fmt}"
    for result in parsed("current", name, fmt):
        assert BenchResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_from_dict_rejects_unknown_keys() -> None:
    data = parsed("current", "plain.json", "json")[0].to_dict()

    with pytest.raises(ValueError, match="surprise"):
        BenchResult.from_dict({**data, "surprise": 1})


def test_results_are_hashable_values() -> None:
    results = parsed("current", "sweep.json", "json")

    assert len(set(results)) == len(results)


# --- properties: the oracle's output parses back to the rows it printed ----------------

_plain_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
_ts = st.integers(0, 10**13).map(lambda n: n / 10**6)  # survives printf("%f")
_sample_ts = st.floats(0, 1e12).map(lambda x: float(f"{x:g}"))  # survives std::ostream


def _representable(fmt: str, text: str) -> bool:
    """Whether llama-bench's ``fmt`` printer can carry ``text`` unambiguously."""
    if fmt == "md":
        return "|" not in text and "\n" not in text and text == text.strip()
    if fmt == "sql":
        return "', '" not in text and "\n" not in text and "\r" not in text
    return True


@st.composite
def oracle_rows_strategy(draw: st.DrawFn, generation: Generation, fmt: str) -> Row:
    values: dict[str, object] = {}
    for field in generation.fields:
        kind = generation.field_type(field)
        if field in {"n_prompt", "n_gen", "n_depth", "model_size", "model_n_params"}:
            values[field] = draw(st.integers(0, 2**40))
        elif field in {"avg_ts", "stddev_ts"}:
            values[field] = draw(_ts)
        elif kind == INT:
            values[field] = draw(st.integers(-(2**31), 2**64 - 1))
        elif kind == BOOL:
            values[field] = draw(st.booleans())
        else:
            values[field] = draw(_plain_text.filter(lambda text: _representable(fmt, text)))
    return Row(
        values=values,
        samples_ns=tuple(draw(st.lists(st.integers(0, 2**64 - 1), max_size=3))),
        samples_ts=tuple(draw(st.lists(_sample_ts, max_size=3))),
    )


def _expected(generation: Generation, fmt: str, row: Row, shown: set[str]) -> dict[str, object]:
    """What parsing ``row`` printed in ``fmt`` must give, field by field."""
    values = row.values
    n_prompt, n_gen, n_depth = values["n_prompt"], values["n_gen"], values["n_depth"]
    assert isinstance(n_prompt, int)
    assert isinstance(n_gen, int)
    assert isinstance(n_depth, int)
    if fmt == "md":
        columns = md_columns(generation, "CPU", shown)
        params: dict[str, object] = {}
        for column in columns[:-1]:  # t/s is read into avg_ts and stddev_ts
            key = {"model": "model_type", "backend": "backends"}.get(column, column)
            params[key] = (
                md_cell(row, column) if column in {"size", "params", "test"} else values[key]
            )
        avg_ts = float(md_cell(row, "t/s").split(" ± ")[0])
        stddev_ts = float(md_cell(row, "t/s").split(" ± ")[1])
        params.update(avg_ts=avg_ts, stddev_ts=stddev_ts)
        return {
            "test": bench_test_name(n_prompt, n_gen, n_depth),
            "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth,
            "avg_ts": avg_ts, "stddev_ts": stddev_ts,
            "model_type": values["model_type"], "backends": values["backends"],
            "model_size": None, "params": params,
        }  # fmt: skip
    garble = garble_json if fmt in {"json", "jsonl"} else str
    params = {k: garble(v) if isinstance(v, str) else v for k, v in values.items()}
    samples_ns: tuple[int, ...] | None = None
    samples_ts: tuple[float, ...] | None = None
    if fmt in {"json", "jsonl"}:
        samples_ns, samples_ts = row.samples_ns, row.samples_ts
        params.update(samples_ns=samples_ns, samples_ts=samples_ts)
    return {
        "test": bench_test_name(n_prompt, n_gen, n_depth),
        "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth,
        "avg_ts": values["avg_ts"], "stddev_ts": values["stddev_ts"],
        "model_filename": params["model_filename"], "model_type": params["model_type"],
        "model_size": values["model_size"], "model_n_params": values["model_n_params"],
        "avg_ns": values["avg_ns"], "stddev_ns": values["stddev_ns"],
        "samples_ns": samples_ns, "samples_ts": samples_ts,
        "build_commit": params["build_commit"], "build_number": values["build_number"],
        "backends": params["backends"], "test_time": params["test_time"], "params": params,
    }  # fmt: skip


@st.composite
def rendered_outputs(draw: st.DrawFn) -> tuple[str, str, list[dict[str, object]]]:
    generation = draw(st.sampled_from([LEGACY, CURRENT]))
    fmt = draw(st.sampled_from(BENCH_OUTPUT_FORMATS))
    rows = draw(st.lists(oracle_rows_strategy(generation, fmt), max_size=3))
    optional = [f for f in generation.md_optional if f not in {"n_gpu_layers", "n_threads"}]
    shown = set(draw(st.lists(st.sampled_from(optional), unique=True, max_size=4)))
    text = render(fmt, generation, rows, shown=shown, build=("abc1234", 42))
    return fmt, text, [_expected(generation, fmt, row, shown) for row in rows]


@given(rendered_outputs())
def test_what_llama_bench_prints_parses_back_to_the_same_rows(
    case: tuple[str, str, list[dict[str, object]]],
) -> None:
    fmt, text, expected = case

    results = parse_bench_output(text, fmt)

    actual = [
        {key: getattr(result, key) for key in row} | {"params": dict(result.params)}
        for result, row in zip(results, expected, strict=True)
    ]
    assert actual == expected
    if fmt == "md":
        assert all((r.build_commit, r.build_number) == ("abc1234", 42) for r in results)


@given(rendered_outputs())
def test_every_parsed_result_survives_the_wire_format(
    case: tuple[str, str, list[dict[str, object]]],
) -> None:
    fmt, text, _ = case
    for result in parse_bench_output(text, fmt):
        assert BenchResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# --- properties: nothing but BenchParseError, whatever the text ------------------------


def _parse_or_parse_error(text: str, fmt: str) -> list[BenchResult] | BenchParseError:
    """The results, or the BenchParseError raised; any other exception escapes."""
    try:
        return parse_bench_output(text, fmt)
    except BenchParseError as exc:
        return exc


@given(st.text(), st.sampled_from(BENCH_OUTPUT_FORMATS))
def test_any_text_gives_results_or_a_parse_error(text: str, fmt: str) -> None:
    outcome = _parse_or_parse_error(text, fmt)

    assert isinstance(outcome, list) or (outcome.line or 1) >= 1


_REAL_OUTPUTS = sorted(
    (path.parent.name, path.name)
    for path in DATA.glob("*/*")
    if path.suffix in {".md", ".csv", ".json", ".jsonl", ".sql"}
)


@st.composite
def mutated_outputs(draw: st.DrawFn) -> tuple[str, str]:
    generation, name = draw(st.sampled_from(_REAL_OUTPUTS))
    fmt = name.rsplit(".", 1)[1]
    text = captured(generation, name)
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 40)))
        how = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if how == "delete":
            text = text[:start] + text[end:]
        elif how == "duplicate":
            text = text[:end] + text[start:end] + text[end:]
        else:
            noise = draw(st.text(st.sampled_from("0123456789-.,:'\"{}[]|±\n\r x"), max_size=6))
            text = text[:start] + noise + (text[start:] if how == "insert" else text[end:])
    return fmt, text


@given(mutated_outputs())
def test_mangled_real_output_gives_results_or_a_parse_error(case: tuple[str, str]) -> None:
    fmt, text = case

    outcome = _parse_or_parse_error(text, fmt)

    assert isinstance(outcome, list | BenchParseError)


# --- the real binaries ------------------------------------------------------------------


@pytest.mark.real_binary
def test_a_live_llama_bench_run_parses_the_same_from_json_and_csv(
    llama_build: Any, tiny_model_file: Path
) -> None:
    done = subprocess.run(
        [
            str(llama_build.bench.path), "-m", str(tiny_model_file), "-p", "16", "-n", "8",
            "-r", "1", "-o", "json", "-oe", "csv",
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip

    from_json = parse_bench_output(done.stdout, "json")
    from_csv = parse_bench_output(done.stderr, "csv")

    assert [r.test for r in from_json] == ["pp16", "tg8"]
    assert [without(r, *TEXT_ONLY) for r in from_csv] == [without(r, *TEXT_ONLY) for r in from_json]
    assert {r.model_filename for r in from_json} == {str(tiny_model_file)}
