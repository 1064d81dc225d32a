"""A fast GGUF header reader: the few facts the model catalog shows, nothing more.

``gguf.GGUFReader`` memory-maps the whole file and builds numpy views of every key, the
whole vocabulary and every tensor record: about 8 ms for a half-megabyte test model and
far more for a real one with a 150k-token vocabulary. Listing a folder of a thousand
models that way takes many seconds. This reader makes one buffered pass over the header,
keeps the handful of keys the catalog uses, skips everything else (arrays by element type
and length, strings by their length) and sums the tensor shapes for the parameter count.

The layout (little-endian, versions 2 and 3)::

    magic "GGUF" | version u32 | tensor count u64 | kv count u64
    kv:     key (u64 length + UTF-8) | value type u32 | value
    array:  element type u32 | count u64 | elements
    tensor: name (string) | n_dims u32 | dims u64 * n_dims | ggml type u32 | offset u64
    padding to general.alignment (default 32) | tensor data

Every problem with the bytes raises :class:`GGUFError` with the byte offset where it was
found; no other exception escapes :func:`parse_header` whatever it is given, and
:func:`read_header` adds only the ``OSError`` of opening or reading the file.

The catalog reads every file in the models folder on request, so what a header may cost
is bounded whatever the bytes: a sparse file takes 4 KB of disk for any size, and its
zeros are a well-formed run of empty keys. Counts are checked against the bytes left and
capped far above what real models carry, keys and tensor names must be unique (as
llama.cpp requires), and what is legal but slow anyway (a few million empty strings in
an array) ends in a ``"header too large"`` :class:`GGUFError` once it has used
:data:`HEADER_CPU_BUDGET_S` of CPU time.

>>> header = parse_header(b"GGUF" + bytes([3, 0, 0, 0]) + bytes(16))
>>> header.version, header.tensor_count, header.parameter_count
(3, 0, 0)
"""

from __future__ import annotations

import io
import math
import os
import struct
import time
from typing import Any, Protocol

import attrs

__all__ = [
    "FILE_TYPE_NAMES",
    "GGML_TYPE_SIZES",
    "HEADER_CPU_BUDGET_S",
    "GGUFError",
    "GGUFHeader",
    "file_type_name",
    "parse_header",
    "read_header",
]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
# The spec caps keys at 65535 bytes; the same cap on tensor names turns a corrupt length
# into a clear error instead of a read of half the file.
_MAX_NAME_BYTES = 65_535
# Longest string value kept (general.name and friends); a longer one is skipped unread.
_MAX_KEPT_STRING_BYTES = 64 * 1024
_MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp refuses tensors with more
_MAX_ARRAY_NESTING = 8  # arrays of arrays are legal; unbounded nesting is a corrupt file
# One read covers the whole header of a small model; big vocabularies take a few more.
_CHUNK_BYTES = 64 * 1024

# -- what one header may cost -------------------------------------------------------------
# Listing the models folder reads every header in it, on a request. Without bounds a
# crafted file buys minutes of CPU per listing for 4 KB of disk (a sparse file of zeros
# is a valid run of empty keys: 100 MiB of it took 9 to 30 s to read, 1 GiB minutes).
# The caps refuse counts no model has; the budget cuts off any legal layout that is slow.
#
# Real models carry 20 to 60 metadata keys, a few hundred at the very most.
_MAX_KV_COUNT = 4096
# Real models have hundreds to a few thousand tensors; tens of thousands is the most
# anyone could mean.
_MAX_TENSOR_COUNT = 65_536
#: CPU seconds (``time.thread_time``: this thread's, so a slow disk does not count against
#: a file) that reading one header may take before it is refused. Llama 3's vocabulary
#: (128k tokens, 280k merges: 408k strings to skip) takes 36-48 ms of a CI machine's
#: core (bench/bench_catalog.py); ten times that, so that a slower or busier machine
#: never refuses a real model, and a header of millions of empty strings still ends
#: within a second.
HEADER_CPU_BUDGET_S = 0.5
# The clock is read every so many records (keys, tensors, inner arrays), not per record:
# thread_time() is a system call of about 0.4 us.
_CHECK_MASK = 63
# Looked up at each call, so that a test can drive the budget with a clock of its own.
_cpu_time = time.thread_time

# GGUF value types (gguf.GGUFValueType).
_T_UINT8, _T_INT8, _T_UINT16, _T_INT16, _T_UINT32, _T_INT32 = 0, 1, 2, 3, 4, 5
_T_FLOAT32, _T_BOOL, _T_STRING, _T_ARRAY, _T_UINT64, _T_INT64, _T_FLOAT64 = (
    6, 7, 8, 9, 10, 11, 12,
)  # fmt: skip
_SCALARS: dict[int, struct.Struct] = {
    _T_UINT8: struct.Struct("<B"),
    _T_INT8: struct.Struct("<b"),
    _T_UINT16: struct.Struct("<H"),
    _T_INT16: struct.Struct("<h"),
    _T_UINT32: struct.Struct("<I"),
    _T_INT32: struct.Struct("<i"),
    _T_FLOAT32: struct.Struct("<f"),
    _T_BOOL: struct.Struct("<?"),
    _T_UINT64: struct.Struct("<Q"),
    _T_INT64: struct.Struct("<q"),
    _T_FLOAT64: struct.Struct("<d"),
}
_SCALAR_SIZES = {code: s.size for code, s in _SCALARS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_COUNTS = struct.Struct("<QQ")
# After a tensor's name: dims, ggml type and data offset, one Struct per dimension count.
_TENSOR_TAILS = {n: struct.Struct(f"<{n}QIQ") for n in range(_MAX_DIMS + 1)}
# Smallest possible records, to refuse absurd counts before looping over them.
_MIN_KV_BYTES = 8 + 4 + 1  # empty key, type, one-byte value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # empty name, n_dims 0, type, offset

#: llama.cpp's ``general.file_type`` values (``llama_ftype``) and the names
#: ``llama-quantize`` uses for them. A test keeps this table equal to ``gguf.LlamaFileType``
#: so that this module does not import gguf (and numpy) at run time.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}  # fmt: skip

#: ggml tensor types: ``type id -> (elements per block, bytes per block)``, as
#: ``gguf.GGML_QUANT_SIZES`` has them (a test keeps the two equal). Used to check that the
#: file holds all of its tensor data; a type missing here only skips that check.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
    25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip

# Keys kept whole; `{arch}.*` keys are picked by suffix because general.architecture need
# not come before them.
_KEPT_KEYS = frozenset({
    "general.architecture", "general.name", "general.file_type", "general.type",
    "general.alignment", "split.count", "split.no", "split.tensors.count",
})  # fmt: skip
#: The vocabulary's tokens: only its length is kept (the logits' size, for the estimate).
_VOCAB_KEY = "tokenizer.ggml.tokens"
_ARCH_SUFFIXES = (
    ".context_length", ".block_count", ".embedding_length", ".expert_count",
    ".attention.head_count", ".attention.head_count_kv", ".attention.key_length",
    ".attention.value_length",
)  # fmt: skip


class GGUFError(ValueError):
    """The bytes are not a GGUF file llama.cpp could read; ``offset`` says where it broke."""

    def __init__(self, message: str, *, offset: int) -> None:
        self.offset = offset
        self.reason = message
        super().__init__(f"{message} (at byte {offset})")


def file_type_name(file_type: int) -> str:
    """The llama-quantize name of a ``general.file_type`` value, e.g. ``15 -> "Q4_K_M"``.

    >>> file_type_name(15), file_type_name(999)
    ('Q4_K_M', 'file type 999')
    """
    return FILE_TYPE_NAMES.get(file_type, f"file type {file_type}")


@attrs.frozen(kw_only=True)
class GGUFHeader:
    """What the catalog needs from a GGUF header; a field is None when its key is absent."""

    version: int
    tensor_count: int
    kv_count: int
    architecture: str | None
    name: str | None
    file_type: int | None
    general_type: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    #: Attention shape, for the KV cache estimate. ``head_count_kv`` is None when the
    #: file gives it per layer (an array) or not at all; key/value lengths default to
    #: ``embedding_length / head_count`` in llama.cpp.
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    #: Experts per MoE layer (None for a dense model).
    expert_count: int | None = None
    #: Tokens in the vocabulary (the length of ``tokenizer.ggml.tokens``).
    vocab_size: int | None = None
    split_count: int | None
    split_no: int | None
    #: Elements in this file's tensors (for a shard, only the shard's own tensors).
    parameter_count: int
    alignment: int
    #: Where tensor data starts, and the smallest file size that holds all of it.
    data_offset: int
    required_size: int

    @property
    def tensor_bytes(self) -> int:
        """Bytes of tensor data in this file (the weights, for the memory estimate)."""
        return self.required_size - self.data_offset if self.tensor_count else 0

    @property
    def quantization(self) -> str | None:
        """The file type's name (``"Q4_K_M"``), or None when the file does not say."""
        return None if self.file_type is None else file_type_name(self.file_type)


class _Source(Protocol):
    def read(self, size: int, /) -> bytes | None: ...
    def seek(self, offset: int, /) -> int: ...


class _Reader:
    """A cursor over a file with one buffer: skips move the cursor without reading.

    It also keeps the header's CPU budget: :meth:`check_budget` raises once it is spent.
    """

    __slots__ = ("_base", "_budget_s", "_buf", "_deadline", "_file", "_file_at", "_pos", "size")

    def __init__(self, file: _Source, size: int, *, budget_s: float) -> None:
        self._file = file
        self.size = size
        self._buf = b""
        self._base = 0  # file offset of _buf[0]
        self._pos = 0  # cursor inside _buf
        self._file_at = 0  # where the next file.read() reads from
        self._budget_s = budget_s
        self._deadline = _cpu_time() + budget_s

    def check_budget(self, what: str) -> None:
        """Refuse the header once reading it has used up its CPU budget."""
        if _cpu_time() > self._deadline:
            raise GGUFError(
                f"header too large: reading {what} exceeds the "
                f"{self._budget_s * 1000:g} ms CPU budget",
                offset=self.offset,
            )

    @property
    def offset(self) -> int:
        return self._base + self._pos

    @property
    def remaining(self) -> int:
        return self.size - self.offset

    def _fill(self, n: int, what: str) -> None:
        """Make ``n`` bytes available at the cursor, or fail if the file ends first."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            return
        start = self.offset
        if n > self.size - start:
            raise GGUFError(
                f"file ends inside {what}: {n} bytes needed, {self.size - start} left",
                offset=start,
            )
        buffered_end = self._base + len(self._buf)
        want = min(max(n - avail, _CHUNK_BYTES), self.size - buffered_end)
        if self._file_at != buffered_end:
            self._file.seek(buffered_end)
        parts = [self._buf[self._pos :]]
        got = 0
        while got < want:
            data = self._file.read(want - got)
            if not data:  # the file shrank after we measured it
                raise GGUFError(f"file ends inside {what}", offset=buffered_end + got)
            parts.append(data)
            got += len(data)
        self._buf = b"".join(parts)
        self._base, self._pos, self._file_at = start, 0, buffered_end + got

    def u32(self, what: str) -> int:
        self._fill(4, what)
        (value,) = _U32.unpack_from(self._buf, self._pos)
        self._pos += 4
        return int(value)

    def u64(self, what: str) -> int:
        self._fill(8, what)
        (value,) = _U64.unpack_from(self._buf, self._pos)
        self._pos += 8
        return int(value)

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[Any, ...]:
        self._fill(fmt.size, what)
        values = fmt.unpack_from(self._buf, self._pos)
        self._pos += fmt.size
        return values

    def take(self, n: int, what: str) -> bytes:
        self._fill(n, what)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise GGUFError(
                f"file ends inside {what}: {n} bytes needed, {self.remaining} left",
                offset=self.offset,
            )
        if self._pos + n <= len(self._buf):
            self._pos += n
        else:  # jump past the buffer; the next _fill seeks there
            self._base, self._buf, self._pos = self.offset + n, b"", 0

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` length-prefixed strings (a vocabulary) in a tight loop."""
        unpack = _U64.unpack_from
        while count:
            buf, pos = self._buf, self._pos
            done = count
            # A vocabulary has 100k+ strings: no per-string bounds check or method call.
            # Reading a length past the buffer's end raises struct.error (OverflowError
            # when a corrupt length pushed `pos` past 2**63), which ends the pass; `pos`
            # then points at that length, or past the buffer (mid-string, or corrupt).
            try:
                for index in range(count):  # noqa: B007 - `index` is read by the except clause
                    pos += 8 + unpack(buf, pos)[0]
            except (struct.error, OverflowError):
                done = index
            count -= done
            if pos > len(buf):  # a string runs past the buffer: skip (and check) its tail
                self._pos = len(buf)
                self.skip(pos - len(buf), what)
            else:
                self._pos = pos
            if count:
                # One pass covers at most a buffer (8k strings at least): a clock read
                # per pass costs nothing, and a file of empty strings is cut off here.
                self.check_budget(what)
                self._fill(8, what)


def read_header(
    path: str | os.PathLike[str], *, cpu_budget_s: float = HEADER_CPU_BUDGET_S
) -> GGUFHeader:
    """Read the header of the GGUF file at ``path``.

    Raises :class:`GGUFError` for bytes llama.cpp could not read or a header that takes
    more than ``cpu_budget_s`` of CPU time to read, ``OSError`` when the file cannot be
    opened or read.
    """
    # Unbuffered: _Reader does its own buffering, and skips should not drag data in.
    with open(path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        return _parse(_Reader(file, size, budget_s=cpu_budget_s))


def parse_header(data: bytes, *, cpu_budget_s: float = HEADER_CPU_BUDGET_S) -> GGUFHeader:
    """Parse the header of a whole GGUF file held in memory.

    Raises only :class:`GGUFError`, whatever the bytes (``"header too large"`` for a
    header that takes more than ``cpu_budget_s`` of CPU time).
    """
    return _parse(_Reader(io.BytesIO(data), len(data), budget_s=cpu_budget_s))


def _parse(r: _Reader) -> GGUFHeader:
    if r.size == 0:
        raise GGUFError("empty file, not a GGUF model", offset=0)
    magic = r.take(min(4, r.size), "the magic")
    if magic != _MAGIC:
        raise GGUFError(f"not a GGUF file: starts with {magic!r}, expected {_MAGIC!r}", offset=0)
    version = r.u32("the version")
    if version not in _SUPPORTED_VERSIONS:
        raise GGUFError(_version_problem(version), offset=4)
    tensor_count, kv_count = r.unpack(_COUNTS, "the tensor and kv counts")
    if kv_count * _MIN_KV_BYTES > r.remaining:
        raise GGUFError(
            f"file ends before its {kv_count} key/values: {r.remaining} bytes left", offset=16
        )
    if tensor_count * _MIN_TENSOR_BYTES > r.remaining:
        raise GGUFError(
            f"file ends before its {tensor_count} tensors: {r.remaining} bytes left", offset=8
        )
    if kv_count > _MAX_KV_COUNT:
        raise GGUFError(
            f"header too large: {kv_count} key/values, more than the {_MAX_KV_COUNT} "
            "a model could carry",
            offset=16,
        )
    if tensor_count > _MAX_TENSOR_COUNT:
        raise GGUFError(
            f"header too large: {tensor_count} tensors, more than the {_MAX_TENSOR_COUNT} "
            "a model could have",
            offset=8,
        )

    kept: dict[str, str | int | float | bool] = {}
    seen_keys: set[bytes] = set()
    for index in range(kv_count):
        if not index & _CHECK_MASK:
            r.check_budget(f"key/value {index}")
        _read_kv(r, kept, seen_keys)

    alignment = kept.get("general.alignment", _DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(
            f"general.alignment must be a power of two, got {alignment!r}", offset=r.offset
        )
    parameter_count, data_extent = _read_tensor_infos(r, tensor_count, alignment)
    data_offset = -(-r.offset // alignment) * alignment
    required_size = data_offset + data_extent if tensor_count else r.offset
    if required_size > r.size:
        raise GGUFError(
            f"file is truncated: its tensors need {required_size} bytes, it has {r.size}",
            offset=r.size,
        )

    def text(key: str) -> str | None:
        value = kept.get(key)
        return value if isinstance(value, str) else None

    def number(key: str) -> int | None:
        value = kept.get(key)
        return value if type(value) is int else None

    architecture = text("general.architecture")

    def arch(suffix: str) -> int | None:
        return number(f"{architecture}.{suffix}") if architecture else None

    return GGUFHeader(
        version=version,
        tensor_count=tensor_count,
        kv_count=kv_count,
        architecture=architecture,
        name=text("general.name"),
        file_type=number("general.file_type"),
        general_type=text("general.type"),
        context_length=arch("context_length"),
        block_count=arch("block_count"),
        embedding_length=arch("embedding_length"),
        head_count=arch("attention.head_count"),
        head_count_kv=arch("attention.head_count_kv"),
        key_length=arch("attention.key_length"),
        value_length=arch("attention.value_length"),
        expert_count=arch("expert_count"),
        vocab_size=number(_VOCAB_KEY),
        split_count=number("split.count"),
        split_no=number("split.no"),
        parameter_count=parameter_count,
        alignment=alignment,
        data_offset=data_offset,
        required_size=required_size,
    )


def _version_problem(version: int) -> str:
    if version & 0xFFFF == 0 and version:
        # The magic is always written little-endian; the version is not.
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        return (
            f"big-endian GGUF (version {swapped} byte-swapped): only little-endian files"
            " are supported"
        )
    if version == 1:
        return "GGUF version 1 is not supported (llama.cpp reads versions 2 and 3)"
    return f"unknown GGUF version {version} (supported: 2 and 3)"


def _read_kv(r: _Reader, kept: dict[str, str | int | float | bool], seen: set[bytes]) -> None:
    key_at = r.offset
    key_len = r.u64("a key length")
    if key_len > _MAX_NAME_BYTES:
        raise GGUFError(f"key length {key_len} exceeds {_MAX_NAME_BYTES}", offset=key_at)
    raw_key = r.take(key_len, "a key")
    # "replace", never "surrogateescape": no lone surrogate may leave this module.
    key = raw_key.decode("utf-8", "replace")
    if raw_key in seen:  # llama.cpp refuses the file; and a run of zeros is one such key
        raise GGUFError(f"duplicate key {key!r}", offset=key_at)
    seen.add(raw_key)
    type_at = r.offset
    value_type = r.u32(f"the type of {key!r}")
    keep = key in _KEPT_KEYS or key.endswith(_ARCH_SUFFIXES)
    scalar = _SCALARS.get(value_type)
    if scalar is not None:
        if keep:
            (kept[key],) = r.unpack(scalar, f"the value of {key!r}")
        else:
            r.skip(scalar.size, f"the value of {key!r}")
    elif value_type == _T_STRING:
        length = r.u64(f"the length of {key!r}")
        if keep and length <= _MAX_KEPT_STRING_BYTES:
            kept[key] = r.take(length, f"the value of {key!r}").decode("utf-8", "replace")
        else:
            r.skip(length, f"the value of {key!r}")
    elif value_type == _T_ARRAY:
        count = _skip_array(r, key, 0)
        if key == _VOCAB_KEY:
            kept[_VOCAB_KEY] = count
    else:
        raise GGUFError(f"unknown value type {value_type} for key {key!r}", offset=type_at)


def _skip_array(r: _Reader, key: str, depth: int) -> int:
    """Skip an array value; return its length."""
    if depth >= _MAX_ARRAY_NESTING:
        raise GGUFError(f"arrays nested too deep in {key!r}", offset=r.offset)
    type_at = r.offset
    element_type = r.u32(f"the element type of {key!r}")
    count = r.u64(f"the length of {key!r}")
    what = f"the array {key!r}"
    size = _SCALAR_SIZES.get(element_type)
    if size is not None:
        r.skip(count * size, what)
    elif element_type == _T_STRING:
        if count * 8 > r.remaining:  # every string has at least its length
            raise GGUFError(
                f"file ends inside {what}: {count} strings, {r.remaining} bytes left",
                offset=type_at,
            )
        r.skip_strings(count, what)
    elif element_type == _T_ARRAY:
        if count * 12 > r.remaining:  # every inner array has its type and length
            raise GGUFError(
                f"file ends inside {what}: {count} arrays, {r.remaining} bytes left",
                offset=type_at,
            )
        for index in range(count):
            if not index & _CHECK_MASK:
                r.check_budget(what)
            _skip_array(r, key, depth + 1)
    else:
        raise GGUFError(f"unknown element type {element_type} in {what}", offset=type_at)
    return count


def _read_tensor_infos(r: _Reader, count: int, alignment: int) -> tuple[int, int]:
    """Sum the tensors' elements; return it with the bytes their data spans."""
    parameters = 0
    extent = 0
    names: set[bytes] = set()
    for index in range(count):
        if not index & _CHECK_MASK:
            r.check_budget(f"tensor {index}")
        at = r.offset
        name_len = r.u64("a tensor name length")
        if name_len > _MAX_NAME_BYTES:
            raise GGUFError(f"tensor name length {name_len} exceeds {_MAX_NAME_BYTES}", offset=at)
        name = r.take(name_len, f"the name of tensor {index}")
        if name in names:  # llama.cpp refuses the file
            shown = name.decode("utf-8", "replace")
            raise GGUFError(f"duplicate tensor name {shown!r} (tensor {index})", offset=at)
        names.add(name)
        n_dims = r.u32(f"the dimension count of tensor {index}")
        if n_dims > _MAX_DIMS:
            raise GGUFError(f"tensor {index} has {n_dims} dimensions, at most 4", offset=at)
        *dims, ggml_type, offset = r.unpack(_TENSOR_TAILS[n_dims], f"tensor {index}")
        elements = math.prod(dims)
        if offset % alignment:
            raise GGUFError(f"tensor {index} data offset {offset} is not aligned", offset=at)
        parameters += elements
        block = GGML_TYPE_SIZES.get(ggml_type)
        nbytes = elements // block[0] * block[1] if block else 0
        extent = max(extent, offset + nbytes)
    return parameters, extent
