"""The fast GGUF header reader, checked against the gguf package (the slow oracle)."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch import _gguf
from llamaswitch._gguf import (
    FILE_TYPE_NAMES,
    GGML_TYPE_SIZES,
    GGUFError,
    GGUFHeader,
    file_type_name,
    parse_header,
    read_header,
)
from llamaswitch.testing import (
    LLAMA3_VOCABULARY,
    TinyModelSpec,
    vocabulary_header,
    write_tiny_model,
)

# A small tiny model (about 27 kB) keeps the Hypothesis examples cheap.
SMALL = {"embedding_length": 8, "block_count": 1, "feed_forward_length": 8, "context_length": 32}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_tiny_model(tmp_path_factory.mktemp("gguf") / "small.gguf", name="small", **SMALL)
    return path.read_bytes()


def write_gguf(
    path: Path,
    fill: Callable[[gguf.GGUFWriter], None],
    *,
    arch: str = "llama",
    endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
) -> Path:
    """Write a GGUF file whose keys and tensors ``fill`` adds, in the order it adds them."""
    writer = gguf.GGUFWriter(str(path), arch, endianess=endianess)
    try:
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def one_tensor(writer: gguf.GGUFWriter) -> None:
    writer.add_tensor("output.weight", np.zeros((3, 5), dtype=np.float32))


def header_bytes(*kvs: bytes, tensor_count: int = 0, version: int = 3) -> bytes:
    """A GGUF header with hand-packed key/values (for corrupt lengths gguf would refuse)."""
    return b"GGUF" + struct.pack("<IQQ", version, tensor_count, len(kvs)) + b"".join(kvs)


def key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


# -- what it reads ---------------------------------------------------------------------------


def test_tiny_model_metadata_is_what_was_written(tmp_path: Path) -> None:
    spec = TinyModelSpec(name="Tiny Llama", embedding_length=32, block_count=3, context_length=512)
    path = write_tiny_model(
        tmp_path / "tiny.gguf",
        name=spec.name,
        embedding_length=spec.embedding_length,
        block_count=spec.block_count,
        context_length=spec.context_length,
    )

    header = read_header(path)

    assert (header.architecture, header.name) == ("llama", "Tiny Llama")
    assert (header.context_length, header.block_count, header.embedding_length) == (512, 3, 32)
    assert header.quantization == "F32"
    assert header.parameter_count == spec.parameter_count
    assert (header.split_count, header.split_no, header.general_type) == (None, None, None)


def test_header_agrees_with_gguf_reader(tiny_model_file: Path) -> None:
    header = read_header(tiny_model_file)
    oracle = gguf.GGUFReader(tiny_model_file)

    def field(name: str) -> Any:
        return oracle.get_field(name).contents()  # type: ignore[union-attr]

    assert header.parameter_count == sum(int(t.n_elements) for t in oracle.tensors)
    assert header.tensor_count == len(oracle.tensors)
    assert header.data_offset == oracle.data_offset
    assert header.architecture == field("general.architecture")
    assert header.name == field("general.name")
    assert header.file_type == field("general.file_type")
    assert header.context_length == field("llama.context_length")
    assert header.block_count == field("llama.block_count")
    assert header.embedding_length == field("llama.embedding_length")


def test_keys_after_the_vocabulary_are_found(tmp_path: Path) -> None:
    def fill(w: gguf.GGUFWriter) -> None:
        w.add_token_list([f"token{i}" for i in range(5000)])
        w.add_token_scores([0.5] * 5000)
        w.add_array("test.nested", [[1, 2, 3], [4], [5, 6]])
        w.add_name("late")
        w.add_context_length(4096)
        one_tensor(w)

    header = read_header(write_gguf(tmp_path / "late.gguf", fill))

    assert (header.name, header.context_length, header.parameter_count) == ("late", 4096, 15)


def test_arch_keys_are_found_before_the_architecture_key() -> None:
    data = header_bytes(
        key("qwen2.block_count") + struct.pack("<IQ", 10, 28),  # u64
        key("general.architecture") + struct.pack("<IQ", 8, 5) + b"qwen2",
    )

    header = parse_header(data)

    assert (header.architecture, header.block_count) == ("qwen2", 28)


def test_other_architectures_keys_are_ignored() -> None:
    data = header_bytes(
        key("general.architecture") + struct.pack("<IQ", 8, 4) + b"clip",
        key("clip.vision.block_count") + struct.pack("<II", 4, 24),
    )

    assert parse_header(data).block_count is None


def test_split_keys_are_read(tmp_path: Path) -> None:
    def fill(w: gguf.GGUFWriter) -> None:
        w.add_uint16("split.no", 1)
        w.add_uint16("split.count", 3)
        w.add_int32("split.tensors.count", 7)
        one_tensor(w)

    header = read_header(write_gguf(tmp_path / "shard.gguf", fill))

    assert (header.split_no, header.split_count) == (1, 3)


def test_projector_type_is_read(tmp_path: Path) -> None:
    def fill(w: gguf.GGUFWriter) -> None:
        w.add_type("mmproj")
        one_tensor(w)

    header = read_header(write_gguf(tmp_path / "mmproj.gguf", fill, arch="clip"))

    assert (header.general_type, header.architecture) == ("mmproj", "clip")


def test_missing_keys_are_none() -> None:
    header = parse_header(header_bytes())

    assert header.architecture is None
    assert header.quantization is None
    assert header.context_length is None


def test_a_key_of_the_wrong_type_is_ignored() -> None:
    data = header_bytes(
        key("general.architecture") + struct.pack("<IQ", 8, 5) + b"llama",
        key("llama.context_length") + struct.pack("<If", 6, 4096.0),
    )

    assert parse_header(data).context_length is None


def test_version_2_files_are_read(small_model: bytes) -> None:
    version_2 = small_model[:4] + struct.pack("<I", 2) + small_model[8:]

    assert parse_header(version_2).name == "small"


# -- file type names -------------------------------------------------------------------------


def test_file_type_names_follow_llama_quantize() -> None:
    assert [file_type_name(n) for n in (0, 1, 2, 7, 15)] == ["F32", "F16", "Q4_0", "Q8_0", "Q4_K_M"]


def test_unknown_file_type_is_named_by_its_number() -> None:
    assert file_type_name(999) == "file type 999"


def test_file_type_table_matches_gguf() -> None:
    expected = {
        int(t): t.name.removeprefix("MOSTLY_").removeprefix("ALL_")
        for t in gguf.LlamaFileType
        if t is not gguf.LlamaFileType.GUESSED
    }

    assert expected == FILE_TYPE_NAMES


def test_tensor_type_sizes_match_gguf() -> None:
    assert {int(t): sizes for t, sizes in gguf.GGML_QUANT_SIZES.items()} == GGML_TYPE_SIZES


# -- what it refuses ---------------------------------------------------------------------------


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").write_bytes(b"")

    with pytest.raises(GGUFError, match="empty file") as caught:
        read_header(tmp_path / "empty.gguf")

    assert caught.value.offset == 0


def test_wrong_magic_is_refused() -> None:
    with pytest.raises(GGUFError, match="not a GGUF file") as caught:
        parse_header(b"PK\x03\x04" + bytes(40))

    assert caught.value.offset == 0


def test_big_endian_files_are_refused(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "be.gguf", one_tensor, endianess=gguf.GGUFEndian.BIG)

    with pytest.raises(GGUFError, match="big-endian GGUF") as caught:
        read_header(path)

    assert caught.value.offset == 4


@pytest.mark.parametrize(("version", "message"), [(1, "version 1"), (4, "unknown GGUF version 4")])
def test_unsupported_versions_are_refused(version: int, message: str) -> None:
    with pytest.raises(GGUFError, match=message):
        parse_header(header_bytes(version=version))


def test_truncated_tensor_data_is_refused(small_model: bytes) -> None:
    with pytest.raises(GGUFError, match="file is truncated") as caught:
        parse_header(small_model[: len(small_model) // 2])

    assert caught.value.offset == len(small_model) // 2


def test_truncated_header_names_where_it_ended(small_model: bytes) -> None:
    with pytest.raises(GGUFError, match="file ends inside") as caught:
        parse_header(small_model[:2000])

    assert caught.value.offset <= 2000


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(header_bytes(struct.pack("<Q", 2**60)), id="key length"),
        pytest.param(header_bytes(key("general.name") + struct.pack("<IQ", 8, 2**60)), id="string"),
        pytest.param(header_bytes(key("a") + struct.pack("<IIQ", 9, 10, 2**60)), id="u64 array"),
        pytest.param(header_bytes(key("a") + struct.pack("<IIQ", 9, 8, 2**60)), id="str array"),
        pytest.param(header_bytes(key("a") + struct.pack("<IIQ", 9, 9, 2**60)), id="nested"),
        pytest.param(
            header_bytes(
                key("a") + struct.pack("<IIQQ", 9, 8, 2, 2**64 - 9) + struct.pack("<Q", 1)
            ),
            id="string in a str array",
        ),
        pytest.param(b"GGUF" + struct.pack("<IQQ", 3, 0, 2**60), id="kv count"),
        pytest.param(b"GGUF" + struct.pack("<IQQ", 3, 2**60, 0), id="tensor count"),
    ],
)
def test_absurd_lengths_are_refused_without_allocating(data: bytes) -> None:
    with pytest.raises(GGUFError):
        parse_header(data + bytes(64))


def test_unknown_value_type_is_refused() -> None:
    with pytest.raises(GGUFError, match="unknown value type 13") as caught:
        parse_header(header_bytes(key("a") + struct.pack("<I", 13) + bytes(8)))

    assert caught.value.offset == 24 + 9


def test_deeply_nested_arrays_are_refused() -> None:
    nested = struct.pack("<IQ", 9, 1) * 20
    with pytest.raises(GGUFError, match="nested too deep"):
        parse_header(header_bytes(key("a") + struct.pack("<I", 9) + nested))


def test_tensor_with_too_many_dimensions_is_refused() -> None:
    tensor = key("t") + struct.pack("<I", 5) + struct.pack("<5QIQ", 1, 1, 1, 1, 1, 0, 0)
    with pytest.raises(GGUFError, match="5 dimensions"):
        parse_header(header_bytes(tensor_count=1) + tensor + bytes(64))


def test_bad_alignment_is_refused() -> None:
    data = header_bytes(key("general.alignment") + struct.pack("<II", 4, 24))
    with pytest.raises(GGUFError, match="power of two"):
        parse_header(data)


def test_duplicate_keys_are_refused() -> None:
    name = key("general.name") + struct.pack("<IQ", 8, 1) + b"a"
    with pytest.raises(GGUFError, match=r"duplicate key 'general\.name'"):
        parse_header(header_bytes(name, name))


def test_duplicate_tensor_names_are_refused() -> None:
    tensor = key("t") + struct.pack("<IIQ", 0, 0, 0)  # a scalar F32 at offset 0
    with pytest.raises(GGUFError, match="duplicate tensor name 't'"):
        parse_header(header_bytes(tensor_count=2) + tensor + tensor + bytes(64))


# -- what it costs -----------------------------------------------------------------------------
# A sparse file costs 4 KB of disk whatever its size, and its zeros are well-formed records
# (an empty key with a one-byte value, an empty array, an empty string): the reader must
# end any file quickly, and never list such a file as a model.

# The budget these readings are given: smaller than the default, so that each test
# takes a moment. Their bound is far above it, so that a loaded machine does not fail
# them; the headers measured take seconds to minutes without the bounds.
SMALL_BUDGET_S = 0.05
CPU_BOUND_S = 0.25


def sparse_file(path: Path, head: bytes, size: int) -> Path:
    """A file of ``size`` bytes that starts with ``head`` and holds zeros (unallocated)."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


def cpu_seconds_to_refuse(path: Path) -> tuple[float, GGUFError]:
    """This thread's CPU time for reading ``path``, and the error that must end it."""
    started = time.thread_time()
    with pytest.raises(GGUFError) as caught:
        read_header(path, cpu_budget_s=SMALL_BUDGET_S)
    return time.thread_time() - started, caught.value


def test_a_sparse_file_of_key_values_is_refused_at_once(tmp_path: Path) -> None:
    size = 100 * 2**20
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, (size - 24) // 13)  # the bytes hold them all
    path = sparse_file(tmp_path / "evil.gguf", head, size)

    cpu_s, error = cpu_seconds_to_refuse(path)

    assert error.reason.startswith("header too large: 8065967 key/values")
    assert cpu_s < CPU_BOUND_S


def test_a_sparse_file_of_key_values_within_the_cap_is_refused_as_duplicate_keys(
    tmp_path: Path,
) -> None:
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 4000)
    path = sparse_file(tmp_path / "evil.gguf", head, 2**20)

    with pytest.raises(GGUFError, match="duplicate key ''") as caught:
        read_header(path)

    assert caught.value.offset == 24 + 13  # the second key


def test_more_tensors_than_a_model_could_have_are_refused(tmp_path: Path) -> None:
    head = b"GGUF" + struct.pack("<IQQ", 3, 65_537, 0)
    path = sparse_file(tmp_path / "evil.gguf", head, 100 * 2**20)

    with pytest.raises(GGUFError, match="header too large: 65537 tensors"):
        read_header(path)


def test_an_array_of_millions_of_empty_strings_is_cut_off_by_the_cpu_budget(
    tmp_path: Path,
) -> None:
    size = 256 * 2**20
    head = header_bytes(key("tokenizer.ggml.tokens") + struct.pack("<II", 9, 8))
    count = (size - len(head) - 8) // 8  # every string an empty one: 8 zero bytes
    path = sparse_file(tmp_path / "evil.gguf", head + struct.pack("<Q", count), size)

    cpu_s, error = cpu_seconds_to_refuse(path)

    assert "exceeds the 50 ms CPU budget" in error.reason
    assert cpu_s < CPU_BOUND_S


def test_an_array_of_millions_of_empty_arrays_is_cut_off_by_the_cpu_budget(
    tmp_path: Path,
) -> None:
    size = 64 * 2**20
    head = header_bytes(key("a") + struct.pack("<II", 9, 9))
    count = (size - len(head) - 8) // 12  # every inner array an empty u8 one: 12 zero bytes
    path = sparse_file(tmp_path / "evil.gguf", head + struct.pack("<Q", count), size)

    cpu_s, error = cpu_seconds_to_refuse(path)

    assert "exceeds the 50 ms CPU budget" in error.reason
    assert cpu_s < CPU_BOUND_S


def test_a_header_that_outlasts_its_budget_is_refused_naming_the_budget(
    small_model: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = iter(range(1000))
    monkeypatch.setattr(_gguf, "_cpu_time", lambda: next(ticks) * 0.3)  # 300 ms a reading

    with pytest.raises(GGUFError, match=r"header too large: reading .* 500 ms CPU budget"):
        parse_header(small_model)


def test_a_smaller_budget_can_be_given(small_model: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gguf, "_cpu_time", iter(range(1000)).__next__)  # 1 s a reading

    with pytest.raises(GGUFError, match="exceeds the 250 ms CPU budget"):
        parse_header(small_model, cpu_budget_s=0.25)


def test_a_llama3_vocabulary_is_read_with_the_default_budget() -> None:
    # Its 408k strings are the most a common model makes the reader skip: a budget that
    # refused it would refuse real models. What it costs is measured in
    # bench/bench_catalog.py, beside the budget.
    header = parse_header(vocabulary_header(*LLAMA3_VOCABULARY))

    assert header.name == "big"
    assert header.vocab_size == LLAMA3_VOCABULARY[0]


def test_header_strings_that_are_not_utf8_come_out_as_valid_unicode() -> None:
    # An encoded surrogate (ED A0 80), a stray continuation byte and an invalid byte.
    raw = b"\xed\xa0\x80ok\x80\xff"
    data = header_bytes(
        key("general.name") + struct.pack("<IQ", 8, len(raw)) + raw,
        key("general.architecture") + struct.pack("<IQ", 8, len(raw)) + raw,
    )

    header = parse_header(data)

    assert header.name == header.architecture == "\ufffd\ufffd\ufffdok\ufffd\ufffd"


# -- robustness ------------------------------------------------------------------------------


def outcome(data: bytes) -> GGUFHeader | GGUFError:
    """The header, or the GGUFError; any other exception escapes and fails the test."""
    try:
        return parse_header(data)
    except GGUFError as exc:
        return exc


@given(st.binary(max_size=512))
def test_random_bytes_raise_only_gguf_error(data: bytes) -> None:
    assert isinstance(outcome(data), GGUFHeader | GGUFError)


@given(st.binary(max_size=512))
def test_random_bytes_after_a_valid_start_raise_only_gguf_error(tail: bytes) -> None:
    assert isinstance(outcome(b"GGUF" + struct.pack("<I", 3) + tail), GGUFHeader | GGUFError)


@given(data=st.data())
def test_every_truncation_of_a_valid_file_raises_gguf_error(
    small_model: bytes, data: st.DataObject
) -> None:
    length = data.draw(st.integers(0, len(small_model) - 1))

    with pytest.raises(GGUFError):
        parse_header(small_model[:length])


@given(data=st.data())
def test_corrupted_bytes_in_a_valid_header_raise_only_gguf_error(
    small_model: bytes, data: st.DataObject
) -> None:
    header_end = parse_header(small_model).data_offset
    corrupt = bytearray(small_model)
    for _ in range(data.draw(st.integers(1, 8))):
        corrupt[data.draw(st.integers(0, header_end - 1))] = data.draw(st.integers(0, 255))

    assert isinstance(outcome(bytes(corrupt)), GGUFHeader | GGUFError)
