"""Fuzzing the GGUF header reader: whatever the bytes, a header or a GGUFError, quickly.

``test_gguf.py`` holds what the reader does (and robustness properties over short random
bytes). Here Hypothesis drives larger inputs: random bytes behind a valid start with
edge-case counts, and structured mutations of a real tiny model: every count, length,
type and dimension field set to an edge value, bits flipped, runs inserted, deleted or
duplicated (a duplicated key/value record is a duplicate key), the file cut short or
followed by megabytes of zeros (what a sparse file reads as, which makes huge counts fit).

Each example must end within a bound on this thread's CPU time. The bound is ten times
the reader's 50 ms budget so that a loaded two-core machine does not fail it; the budget
itself is checked exactly in ``test_gguf.py``. ``bench/fuzz_atheris.py`` runs the same
target coverage-guided, for minutes instead of a hundred examples.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import gguf
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch._gguf import GGUFError, GGUFHeader, parse_header, read_header
from llamaswitch._text import encodable
from llamaswitch.testing import write_tiny_model

# Each reading is given a tenth of the default budget, so that a header that runs into it
# costs the run a moment; the bound is ten times that, for a loaded machine.
BUDGET_S = 0.05
CPU_BOUND_S = 0.5
# Values at the edges of what a count, length or type field can hold.
EDGES = (0, 1, 2, 7, 8, 9, 12, 13, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62,
         2**63 - 1, 2**63, 2**64 - 9, 2**64 - 1)  # fmt: skip


@attrs.frozen
class Layout:
    """A real tiny model and where its header keeps its fields."""

    data: bytes
    header_end: int
    #: (offset, size in bytes) of every integer field: counts, lengths, types, dims.
    fields: tuple[tuple[int, int], ...]
    #: (offset, size in bytes) of the fields that count records: the tensor and kv
    #: counts, and every array's length.
    counts: tuple[tuple[int, int], ...]
    #: (start, end) of every key/value and tensor-info record.
    records: tuple[tuple[int, int], ...]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    path = write_tiny_model(
        tmp_path_factory.mktemp("fuzz") / "small.gguf",
        name="small",
        embedding_length=8,
        block_count=1,
        feed_forward_length=8,
        context_length=32,
    )
    reader = gguf.GGUFReader(path)  # the oracle: it says where every field lies
    base = reader.data.ctypes.data
    fields: list[tuple[int, int]] = []
    counts: list[tuple[int, int]] = [(8, 8), (16, 8)]
    starts: list[int] = []
    for field in [*reader.fields.values(), *(t.field for t in reader.tensors)]:
        if not field.name.startswith("GGUF."):
            starts.append(field.offset)
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
            # key length, key, value type, element type, then the length
            counts.append((field.parts[4].ctypes.data - base, 8))
        for part in field.parts:
            if part.dtype.kind in "ui" and part.size <= 4:  # not an array's payload
                offset = part.ctypes.data - base
                fields.extend((offset + k * part.itemsize, part.itemsize) for k in range(part.size))
    header_end = int(reader.data_offset)
    spans = tuple(zip(starts, [*starts[1:], header_end], strict=True))
    return Layout(path.read_bytes(), header_end, tuple(fields), tuple(counts), spans)


def outcome(data: bytes) -> GGUFHeader | GGUFError:
    """The header or the GGUFError, checked to end within the CPU bound."""
    started = time.thread_time()
    try:
        result: GGUFHeader | GGUFError = parse_header(data, cpu_budget_s=BUDGET_S)
    except GGUFError as exc:
        result = exc
    assert time.thread_time() - started < CPU_BOUND_S
    return result


def assert_sane(result: GGUFHeader | GGUFError, size: int) -> None:
    """What any header that comes out must satisfy, and any error must say."""
    if isinstance(result, GGUFError):
        assert 0 <= result.offset <= size
        assert encodable(result.reason)
        return
    assert result.required_size <= size
    assert result.data_offset % result.alignment == 0
    for text in (result.name, result.architecture, result.general_type):
        assert text is None or encodable(text)


@st.composite
def mutated(draw: st.DrawFn, layout: Layout, *, file_size: int | None = None) -> bytes:
    """The model with a few mutations; followed by zeros unless ``file_size`` is given.

    ``file_size`` is the size of the sparse file the result will start: counts are then
    also drawn among those that the file's bytes hold (the cheap denial of service).
    """
    data = bytearray(layout.data)
    zeros = 0 if file_size else draw(st.sampled_from([0, 0, 64, 4096, 2**20, 8 * 2**20]))
    for _ in range(draw(st.integers(1, 4))):
        end = min(layout.header_end, len(data))  # earlier mutations move or cut it
        if not end:
            break
        how = draw(
            st.sampled_from(
                ["fill", "field", "field", "flip", "insert", "delete", "duplicate", "cut"]
            )
        )
        if how == "fill":  # a count as large as the zeros after it can hold, as in F5
            offset, size = draw(st.sampled_from(layout.counts))
            total = file_size or offset + size + zeros
            record = draw(st.sampled_from([8, 12, 13, 24]))  # string, array, kv, tensor
            data[offset:] = ((total - offset - size) // record).to_bytes(size, "little")
        elif how == "field":
            offset, size = draw(st.sampled_from(layout.fields))
            if offset + size > len(data):
                continue
            limit = 2 ** (8 * size) - 1
            total = file_size or len(data) + zeros
            # As many records, strings or inner arrays as the bytes after it can hold.
            filling = [(total - offset) // k for k in (8, 12, 13, 24)]
            edges = [v for v in (*EDGES, *filling) if 0 <= v <= limit]
            value = draw(st.sampled_from(edges) | st.integers(0, limit))
            data[offset : offset + size] = value.to_bytes(size, "little")
        elif how == "flip":
            position = draw(st.integers(0, end - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            position = draw(st.integers(0, end))
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif how == "delete":
            start = draw(st.integers(0, end - 1))
            del data[start : start + draw(st.integers(1, 64))]
        elif how == "duplicate":
            start, stop = draw(st.sampled_from(layout.records))
            data[stop:stop] = data[start:stop]
        else:  # right after a field or a record (zeros then follow it), or anywhere
            edges = [end, *(o + n for o, n in layout.fields), *(r for r, _ in layout.records)]
            del data[draw(st.sampled_from(edges) | st.integers(0, len(data))) :]
    return bytes(data) + bytes(zeros)


@given(data=st.data())
def test_mutated_real_headers_end_in_a_header_or_a_gguf_error_quickly(
    layout: Layout, data: st.DataObject
) -> None:
    mutant = data.draw(mutated(layout))

    assert_sane(outcome(mutant), len(mutant))


@given(
    version=st.sampled_from([2, 3]),
    tensor_count=st.sampled_from(EDGES),
    kv_count=st.sampled_from(EDGES),
    body=st.binary(max_size=4096),
    zeros=st.sampled_from([0, 64, 2**20, 8 * 2**20]),
)
def test_random_bodies_behind_a_valid_start_end_in_a_header_or_a_gguf_error_quickly(
    version: int, tensor_count: int, kv_count: int, body: bytes, zeros: int
) -> None:
    data = b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count) + body + bytes(zeros)

    assert_sane(outcome(data), len(data))


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """One key/value record built from parts a reader must tell apart."""
    key = draw(st.sampled_from([b"", b"general.name", b"general.alignment", b"llama.x", b"a"]))
    value_type = draw(st.integers(0, 14))
    payload = draw(
        st.sampled_from(
            [
                struct.pack("<Q", 3) + b"abc",
                struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1) + b"x" + struct.pack("<Q", 0),
                struct.pack("<IQ", 9, 1) * draw(st.integers(1, 12)) + struct.pack("<IQ", 0, 0),
                struct.pack("<I", 32),
                b"\xed\xa0\x80\xff",
                b"",
            ]
        )
    )
    return struct.pack("<Q", len(key)) + key + struct.pack("<I", value_type) + payload


@given(kvs=st.lists(records(), max_size=8), zeros=st.sampled_from([0, 4096, 2**20]))
def test_records_assembled_from_parts_end_in_a_header_or_a_gguf_error_quickly(
    kvs: list[bytes], zeros: int
) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs) + bytes(zeros)

    assert_sane(outcome(data), len(data))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "fuzz.gguf"


@given(data=st.data(), size=st.sampled_from([2**20, 64 * 2**20, 2**30]))
def test_mutated_headers_in_sparse_files_end_in_a_header_or_a_gguf_error_quickly(
    layout: Layout, scratch: Path, data: st.DataObject, size: int
) -> None:
    head = data.draw(mutated(layout, file_size=size))[: layout.header_end]
    scratch.write_bytes(head)
    os.truncate(scratch, max(size, len(head)))
    started = time.thread_time()

    try:
        result: GGUFHeader | GGUFError = read_header(scratch, cpu_budget_s=BUDGET_S)
    except GGUFError as exc:
        result = exc

    assert time.thread_time() - started < CPU_BOUND_S
    assert_sane(result, max(size, len(head)))


def test_the_layout_covers_every_record_of_the_model(layout: Layout) -> None:
    header = parse_header(layout.data)

    assert len(layout.records) == header.kv_count + header.tensor_count
    assert np.all(np.diff([start for start, _ in layout.records]) > 0)
