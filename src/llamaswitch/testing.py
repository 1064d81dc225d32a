"""Helpers for testing code that drives llama.cpp: tiny real models.

:func:`write_tiny_model` writes a real llama-architecture GGUF file of about half a
megabyte that both llama.cpp generations load in a blink: ``llama-server`` answers
``/health`` 200 within a fraction of a second and serves ``/completion``, ``llama-bench``
finishes a short run in tens of milliseconds. Its output is gibberish: the weights are
small random numbers. It needs the ``gguf`` and ``numpy`` packages (installed with
llamaswitch).

>>> from pathlib import Path
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> path = write_tiny_model(folder / "tiny.gguf", name="tiny", seed=1)
>>> path.stat().st_size > 100_000
True
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import attrs

__all__ = [
    "DEMO_MODELS",
    "HEADLESS_CHROMIUM_ARGS",
    "LLAMA3_VOCABULARY",
    "TinyModelSpec",
    "vocabulary_header",
    "write_demo_models",
    "write_tiny_model",
]

#: Chromium's flags for the dashboard's browser tests and benchmark: headless, and (see
#: FIELD_NOTES.md) without the background networking that keeps trying outside hosts.
HEADLESS_CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# A handful of ordinary pieces after the control and byte tokens, so that text tokenizes
# into something other than raw bytes.
_PIECES = (
    "▁", "▁the", "▁a", "▁is", "▁of", "▁and", "▁to", "▁in", "▁llama", "▁model",
    "e", "t", "a", "o", "i", "n", "s", "h", "r", "l",
)  # fmt: skip


@attrs.frozen(kw_only=True)
class TinyModelSpec:
    """The shape of a tiny model; every knob is a GGUF header field llama.cpp reads."""

    name: str = "tiny"
    embedding_length: int = 64
    block_count: int = 2
    context_length: int = 256
    feed_forward_length: int = 128
    head_count: int = 4
    head_count_kv: int = 4
    seed: int = 0
    #: ``general.architecture``. Anything but ``llama`` makes a file whose header is
    #: sound but that llama.cpp refuses to load (an unknown architecture).
    architecture: str = "llama"

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary: 3 control tokens, 256 byte tokens, the pieces."""
        return 3 + 256 + len(_PIECES)

    @property
    def parameter_count(self) -> int:
        """Parameters written (every tensor element), as llama.cpp would count them."""
        e, f, v = self.embedding_length, self.feed_forward_length, self.vocab_size
        kv = e // self.head_count * self.head_count_kv
        per_block = e + e * e + 2 * e * kv + e * e + e + 3 * e * f
        return 2 * v * e + e + self.block_count * per_block


#: The vocabulary of Llama 3 (tokens, merges): of the common models, the one whose header
#: takes the longest to read, 408k strings to skip.
LLAMA3_VOCABULARY: tuple[int, int] = (128_256, 280_147)

_GGUF_STRING, _GGUF_ARRAY = 8, 9


def vocabulary_header(tokens: int, merges: int, *, name: str = "big") -> bytes:
    """A GGUF header (version 3, no tensors) with a vocabulary of ``tokens`` tokens and
    ``merges`` merges, then ``general.name``: what reading a large real vocabulary costs,
    without its weights. ``parse_header`` reads it."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return struct.pack("<Q", len(raw)) + raw

    def strings(key: str, values: list[str]) -> bytes:
        packed = b"".join(text(value) for value in values)
        return text(key) + struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_STRING, len(values)) + packed

    kvs = (
        strings("tokenizer.ggml.tokens", [f"tok{i}_{'x' * (i % 7)}" for i in range(tokens)]),
        strings("tokenizer.ggml.merges", [f"a{i} b{i}" for i in range(merges)]),
        text("general.name") + struct.pack("<I", _GGUF_STRING) + text(name),
    )
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def write_tiny_model(
    path: str | os.PathLike[str],
    *,
    name: str = "tiny",
    embedding_length: int = 64,
    block_count: int = 2,
    context_length: int = 256,
    feed_forward_length: int = 128,
    head_count: int = 4,
    head_count_kv: int = 4,
    seed: int = 0,
    architecture: str = "llama",
) -> Path:
    """Write a tiny real llama-architecture GGUF model to ``path`` and return the path.

    The file is deterministic for a given set of arguments: the same seed writes the same
    bytes. ``name`` goes into ``general.name``. ``embedding_length`` must be a multiple of
    ``head_count``, and ``head_count`` of ``head_count_kv``. Parent folders are created.
    ``architecture`` other than ``llama`` writes a model llama.cpp cannot load although
    its header is sound: what a test of a failing load needs.
    """
    spec = TinyModelSpec(
        name=name,
        embedding_length=embedding_length,
        block_count=block_count,
        context_length=context_length,
        feed_forward_length=feed_forward_length,
        head_count=head_count,
        head_count_kv=head_count_kv,
        seed=seed,
        architecture=architecture,
    )
    _check(spec)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write(spec, target)
    return target


#: The demo folder's models: file name -> display name, seed and block count.
DEMO_MODELS: dict[str, tuple[str, int, int]] = {
    "tiny-chat.gguf": ("tiny chat (demo)", 1, 2),
    "tiny-code.gguf": ("tiny code (demo)", 2, 1),
}


def write_demo_models(folder: str | os.PathLike[str]) -> list[Path]:
    """Write the demo models into ``folder`` (files already there are kept as they are)."""
    target = Path(folder)
    written = []
    for file_name, (name, seed, blocks) in DEMO_MODELS.items():
        path = target / file_name
        if not path.exists():
            write_tiny_model(path, name=name, seed=seed, block_count=blocks)
        written.append(path)
    return written


def _check(spec: TinyModelSpec) -> None:
    for field in ("embedding_length", "block_count", "context_length", "feed_forward_length",
                  "head_count", "head_count_kv"):  # fmt: skip
        if getattr(spec, field) < 1:
            raise ValueError(f"{field} must be >= 1, got {getattr(spec, field)}")
    if spec.embedding_length % spec.head_count:
        raise ValueError("embedding_length must be a multiple of head_count")
    if spec.head_count % spec.head_count_kv:
        raise ValueError("head_count must be a multiple of head_count_kv")
    if (spec.embedding_length // spec.head_count) % 2:
        raise ValueError("embedding_length / head_count (the head size) must be even for RoPE")


def _write(spec: TinyModelSpec, target: Path) -> None:
    # Imported here: gguf pulls in numpy, which most of llamaswitch never needs.
    import gguf
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    e, f = spec.embedding_length, spec.feed_forward_length
    head_dim = e // spec.head_count
    kv = head_dim * spec.head_count_kv

    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *_PIECES]
    types = [
        gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL,
        *([gguf.TokenType.BYTE] * 256), *([gguf.TokenType.NORMAL] * len(_PIECES)),
    ]  # fmt: skip
    scores = [0.0, 0.0, 0.0, *([0.0] * 256), *(-float(i) for i in range(1, len(_PIECES) + 1))]
    vocab = len(tokens)

    writer = gguf.GGUFWriter(str(target), spec.architecture)
    try:
        writer.add_name(spec.name)
        writer.add_context_length(spec.context_length)
        writer.add_embedding_length(e)
        writer.add_block_count(spec.block_count)
        writer.add_feed_forward_length(f)
        writer.add_head_count(spec.head_count)
        writer.add_head_count_kv(spec.head_count_kv)
        writer.add_rope_dimension_count(head_dim)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_vocab_size(vocab)

        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(0)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)

        def weight(*shape: int) -> np.ndarray:
            return (rng.standard_normal(shape) * 0.02).astype(np.float32)

        ones = np.ones(e, dtype=np.float32)
        # numpy shapes are (rows, cols) = (out, in); GGUF stores them reversed.
        writer.add_tensor("token_embd.weight", weight(vocab, e))
        writer.add_tensor("output_norm.weight", ones)
        writer.add_tensor("output.weight", weight(vocab, e))
        for i in range(spec.block_count):
            writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
            writer.add_tensor(f"blk.{i}.attn_q.weight", weight(e, e))
            writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv, e))
            writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv, e))
            writer.add_tensor(f"blk.{i}.attn_output.weight", weight(e, e))
            writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
            writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(f, e))
            writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(f, e))
            writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(e, f))

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
