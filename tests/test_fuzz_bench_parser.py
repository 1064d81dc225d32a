"""The llama-bench output parser under hostile input: fuzzing, and the valid-Unicode guard.

``test_bench_parser.py`` holds what the parser reads and a robustness property over
random text. Here Hypothesis mutates the real captured outputs of both generations with
what breaks parsers: lone surrogates (undecodable bytes read with ``surrogateescape``)
and their JSON escapes, NUL, numbers past every limit, deep nesting, CRs, BOMs, whole
lines duplicated, swapped or cut. Whatever comes in, the parser ends within a bound on
CPU time, in results or a BenchParseError, and no string it hands out holds a lone
surrogate: the store, the JSON answers and the logs could not write one.
``bench/fuzz_atheris.py`` runs the same target coverage-guided, for minutes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch._errors import BenchParseError
from llamaswitch._text import encodable
from llamaswitch.bench.parser import (
    BENCH_OUTPUT_FORMATS,
    BenchResult,
    parse_bench_output,
    parse_jsonl_line,
)

DATA = Path(__file__).parent / "data" / "bench"
CAPTURES = sorted(
    (path.suffix[1:], path.read_bytes().decode("utf-8"))
    for path in DATA.glob("*/*")
    if path.suffix[1:] in BENCH_OUTPUT_FORMATS
)
# A real parse takes a millisecond or two; a tenth of a second is a parser gone quadratic.
CPU_BOUND_S = 0.5


def capture(generation: str, name: str) -> str:
    return (DATA / generation / name).read_bytes().decode("utf-8")


def parse_within_bound(text: str, fmt: str) -> list[BenchResult] | BenchParseError:
    """The results or the BenchParseError, checked to end within the CPU bound."""
    started = time.thread_time()
    try:
        outcome: list[BenchResult] | BenchParseError = parse_bench_output(text, fmt)
    except BenchParseError as exc:
        outcome = exc
    assert time.thread_time() - started < CPU_BOUND_S
    return outcome


def assert_writable(outcome: list[BenchResult] | BenchParseError) -> None:
    """Every string that came out can be written as UTF-8 (and so stored and shown)."""
    if isinstance(outcome, BenchParseError):
        assert encodable(str(outcome))
    else:
        assert all(encodable(json.dumps(r.to_dict(), ensure_ascii=False)) for r in outcome)


# --- the valid-Unicode guard --------------------------------------------------------------

# Where each format's first row carries text that ends up in a result's strings.
IN_A_ROW = {
    "json": '"/models/tiny',
    "jsonl": '"/models/tiny',
    "csv": '"/models/tiny',
    "sql": "'/models/tiny",
    "md": "| llama",
}


@pytest.mark.parametrize("fmt", BENCH_OUTPUT_FORMATS)
def test_a_lone_surrogate_in_the_text_is_rejected_naming_its_line(fmt: str) -> None:
    text = capture("current", f"plain.{fmt}")
    at = text.index(IN_A_ROW[fmt]) + len(IN_A_ROW[fmt])
    bad = text[:at] + "\udce9" + text[at:]  # a Latin-1 byte read with surrogateescape

    with pytest.raises(BenchParseError, match=r"not valid Unicode \(lone surrogate U\+DCE9") as e:
        parse_bench_output(bad, fmt)

    assert e.value.line == text.count("\n", 0, at) + 1


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_json_escaped_lone_surrogate_is_rejected_naming_its_line(fmt: str) -> None:
    text = capture("current", f"plain.{fmt}")
    bad = text.replace('"/models/tiny.gguf"', '"/models/tiny\\ud800.gguf"', 1)

    with pytest.raises(BenchParseError, match="not valid Unicode") as caught:
        parse_bench_output(bad, fmt)

    assert caught.value.line == (2 if fmt == "json" else 1)  # where the object starts


def test_a_json_escaped_lone_surrogate_in_a_key_is_rejected() -> None:
    text = capture("current", "plain.jsonl").replace('"gpu_info"', '"gpu_\\udfff"', 1)

    with pytest.raises(BenchParseError, match="not valid Unicode"):
        parse_bench_output(text, "jsonl")


def test_a_json_escaped_surrogate_pair_is_read_as_its_character() -> None:
    text = capture("current", "plain.json").replace("/models/tiny", "/models/\\ud83e\\udd99", 1)

    [first, _] = parse_bench_output(text, "json")

    assert first.model_filename == "/models/\U0001f999.gguf"


def test_a_jsonl_line_with_a_lone_surrogate_is_rejected_with_the_line_number_given() -> None:
    line = capture("current", "plain.jsonl").splitlines()[0].replace("tiny", "tiny\ud800")

    with pytest.raises(BenchParseError, match="not valid Unicode") as caught:
        parse_jsonl_line(line, line_number=7)

    assert caught.value.line == 7


def test_a_model_filename_that_is_not_valid_unicode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"model_filename .* is not valid Unicode"):
        parse_bench_output(capture("current", "plain.md"), "md", model_filename="/m/\udce9.gguf")


def test_a_jsonl_model_filename_that_is_not_valid_unicode_is_a_value_error() -> None:
    line = capture("current", "plain.jsonl").splitlines()[0]

    with pytest.raises(ValueError, match=r"model_filename .* is not valid Unicode"):
        parse_jsonl_line(line, model_filename="/m/\udce9.gguf")


def test_an_sql_line_of_parentheses_is_rejected_in_linear_time() -> None:
    started = time.thread_time()

    with pytest.raises(BenchParseError, match="expected CREATE TABLE or INSERT"):
        parse_bench_output("INSERT INTO " + "(" * 100_000, "sql")

    assert time.thread_time() - started < CPU_BOUND_S  # 25 s with the old pattern


# --- fuzzing ------------------------------------------------------------------------------

# What breaks parsers, beside the characters llama-bench prints.
HOSTILE = st.sampled_from(
    [
        "\ud800", "\udfff", "\udce9", "\\ud800", "\\udc80\\ud800", "\\ud83e\\udd99", "\x00",
        "\\u0000", "\ufeff", "\r", "\r\n", "\n\n", "9" * 5000, "-" + "9" * 4400, "1e999",
        "-1e-999", "inf", "-nan", "NaN", "[" * 3000, "{" * 3000, '{"a":' * 500, "'" * 7,
        '"', "''", ",", "|", "±", "| --- |", "INSERT INTO t (", ") VALUES (", ");",
        "CREATE TABLE t (", "build: x (1)", "\u2028", "\U0001f999",
    ]
)  # fmt: skip
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@st.composite
def mutated_captures(draw: st.DrawFn) -> tuple[str, str]:
    fmt, text = draw(st.sampled_from(CAPTURES))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["hostile", "number", "lines", "span", "cut"]))
        if how == "hostile":
            at = draw(st.integers(0, len(text)))
            end = at + draw(st.integers(0, 8))
            text = text[:at] + draw(HOSTILE) + text[end:]
        elif how == "number":  # one of the numbers printed, made enormous or odd
            numbers = list(_NUMBER.finditer(text))
            if numbers:
                match = draw(st.sampled_from(numbers))
                odd = draw(st.sampled_from(["9" * 4301, "-" + "1" * 5000, "1e400", "0x10", ""]))
                text = text[: match.start()] + odd + text[match.end() :]
        elif how == "lines":
            lines = text.split("\n")
            index = draw(st.integers(0, len(lines) - 1))
            other = draw(st.integers(0, len(lines) - 1))
            if draw(st.booleans()):  # a line repeated, as a rerun or a stuck pipe would
                lines[index:index] = [lines[other]] * draw(st.integers(1, 200))
            else:
                lines[index], lines[other] = lines[other], lines[index]
            text = "\n".join(lines)
        elif how == "span":
            start = draw(st.integers(0, len(text)))
            end = draw(st.integers(start, min(len(text), start + 200)))
            text = text[:start] + text[end:] if draw(st.booleans()) else text[:end] + text[start:]
        else:
            text = text[: draw(st.integers(0, len(text)))]
    return draw(st.sampled_from([fmt, fmt, fmt, *BENCH_OUTPUT_FORMATS])), text


@given(mutated_captures())
def test_mutated_captures_give_writable_results_or_a_parse_error_quickly(
    case: tuple[str, str],
) -> None:
    fmt, text = case

    assert_writable(parse_within_bound(text, fmt))


# Every code point, surrogates included (Hypothesis leaves them out by default).
ANY_CHARACTER = st.characters(exclude_categories=())


@given(
    st.text(ANY_CHARACTER, max_size=200) | st.lists(ANY_CHARACTER | HOSTILE).map("".join),
    st.sampled_from(BENCH_OUTPUT_FORMATS),
)
def test_any_text_with_surrogates_gives_writable_results_or_a_parse_error_quickly(
    text: str, fmt: str
) -> None:
    assert_writable(parse_within_bound(text, fmt))


@given(st.data())
def test_a_mutated_jsonl_line_gives_a_writable_result_none_or_a_parse_error(
    data: st.DataObject,
) -> None:
    line = data.draw(st.sampled_from(capture("current", "sweep.jsonl").splitlines()))
    at = data.draw(st.integers(0, len(line)))
    line = line[:at] + data.draw(HOSTILE | st.text(ANY_CHARACTER, max_size=4)) + line[at:]

    try:
        outcome: list[BenchResult] | BenchParseError = [
            result for result in [parse_jsonl_line(line, line_number=1)] if result is not None
        ]
    except BenchParseError as exc:
        outcome = exc

    assert_writable(outcome)
    assert not isinstance(outcome, BenchParseError) or outcome.line == 1
