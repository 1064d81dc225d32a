"""How much memory a model will take, before it is loaded: an estimate from its header.

The estimate adds three parts, each split between the GPUs and RAM the way llama.cpp
places them:

- **weights**: the model's file size, split by ``n_gpu_layers`` over ``block_count + 1``
  layers (llama.cpp counts the output layer as one more), with ``n_cpu_moe`` moving most
  of a MoE layer's weights back to RAM;
- **KV cache**: ``layers x context x (kv_heads x key_length x bytes(cache_type_k) +
  kv_heads x value_length x bytes(cache_type_v))``; it follows its layer's weights;
- **compute buffers**: ``ubatch x (4 x embedding + vocabulary) x 4 bytes`` for the graph
  and logits, plus ``ubatch x context x heads x 4`` of attention scores without flash
  attention, on the main device; and a fixed runtime allowance in RAM.

Unset settings take the binary's defaults (the context of a current build: the model's;
of a legacy one: 4096). Once a model has run, the gateway prefers what it measured (see
:mod:`llamaswitch.gateway.measurements`); this is for the first load.

>>> from pathlib import Path
>>> from llamaswitch._catalog import ModelInfo
>>> info = ModelInfo(name="m.gguf", path=Path("m.gguf"), size=4 << 30, relative_path="m.gguf",
...     block_count=31, embedding_length=4096, head_count=32, head_count_kv=8,
...     vocab_size=32000)
>>> need = estimate(info, ServerConfig(ctx_size=8192, n_gpu_layers="all"), gpus=(0,))
>>> round(need.vram_mib[0]), round(need.ram_mib)
(5182, 32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from llamaswitch._capabilities import Capabilities
from llamaswitch._catalog import ModelInfo
from llamaswitch.servers.config import ServerConfig

__all__ = ["MemoryNeed", "cache_type_bytes", "estimate"]

_MIB = 1024 * 1024

#: Bytes per element of each KV cache type (ggml's block size over its element count).
_CACHE_TYPE_BYTES: Mapping[str, float] = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
    "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32,
}  # fmt: skip

#: What a llama-server process holds beyond the model: code, libraries, HTTP buffers.
#: Measured here: a tiny model's server has an RSS of about 21 MiB.
RUNTIME_RAM_MIB = 32.0
#: The context size legacy builds use when ``-c`` is not given (``--help``: 4096).
_LEGACY_DEFAULT_CTX = 4096
#: Share of a MoE layer's weights that are the experts (what ``n_cpu_moe`` keeps in RAM).
_EXPERT_SHARE = 0.9
#: When the header does not say, a vocabulary of this size is assumed for the logits.
_DEFAULT_VOCAB = 32000


@attrs.frozen
class MemoryNeed:
    """Memory a model takes: RAM and VRAM per GPU index, in MiB.

    ``source`` says where the figures come from: ``estimate`` (the header) or
    ``measured`` (a run of the same model with the same memory settings).
    """

    ram_mib: float
    vram_mib: Mapping[int, float] = attrs.field(factory=dict)
    source: str = "estimate"
    #: The parts of an estimate, in MiB (empty for a measurement).
    parts: Mapping[str, float] = attrs.field(factory=dict)

    @property
    def total_mib(self) -> float:
        """RAM and VRAM together."""
        return self.ram_mib + sum(self.vram_mib.values())


def cache_type_bytes(cache_type: str | None) -> float:
    """Bytes per KV cache element of ``cache_type`` (unset: ``f16``, llama.cpp's default)."""
    return _CACHE_TYPE_BYTES.get(cache_type or "f16", 2.0)


def context_size(info: ModelInfo, config: ServerConfig, caps: Capabilities | None) -> int:
    """The context llama-server will allocate for ``config`` (0 or unset: the binary's)."""
    if config.ctx_size:
        return config.ctx_size
    default = caps.default_number("-c", "--ctx-size") if caps is not None else None
    if config.ctx_size is None and default:  # legacy builds: 4096 unless told
        return default
    if info.context_length:
        return info.context_length
    return _LEGACY_DEFAULT_CTX


def gpu_layer_share(
    info: ModelInfo, config: ServerConfig, gpus: Sequence[int], caps: Capabilities | None = None
) -> float:
    """The share of the model's layers that go to the GPUs (0 without a GPU).

    Unset is ``auto`` on current builds (with a model within the budget: all layers) and
    none on legacy ones.
    """
    if not gpus:
        return 0.0
    value = config.n_gpu_layers
    if value is None:
        return 0.0 if caps is not None and caps.dialect == "legacy" else 1.0
    if value in ("all", "auto"):
        return 1.0
    count = int(value)
    layers = (info.block_count or 0) + 1
    return 1.0 if count < 0 else min(count, layers) / layers


def _flash_attention(config: ServerConfig, caps: Capabilities | None) -> bool:
    if config.flash_attn is None:  # current builds: auto, which picks it where it works
        return caps is None or caps.dialect == "current"
    return config.flash_attn not in (False, "off")


def estimate(
    info: ModelInfo,
    config: ServerConfig,
    *,
    gpus: Sequence[int] = (),
    caps: Capabilities | None = None,
    device_totals: Mapping[int, float] | None = None,
) -> MemoryNeed:
    """Estimate what serving ``info`` with ``config`` takes (see the module docstring).

    ``gpus`` are the indexes of the GPUs llama.cpp would use; ``device_totals`` (MiB per
    GPU) weigh the split over several of them, as llama.cpp does by default.
    """
    layers = info.block_count or 0
    share = gpu_layer_share(info, config, gpus, caps)
    weights = info.size / _MIB
    gpu_weights = weights * share
    if info.expert_count and config.n_cpu_moe and layers:
        moved = weights * _EXPERT_SHARE * min(config.n_cpu_moe, layers) / (layers + 1)
        gpu_weights = max(0.0, gpu_weights - moved * share)
    cpu_weights = weights - gpu_weights

    ctx = context_size(info, config, caps)
    embedding = info.embedding_length or 0
    heads = info.head_count or 1
    kv_heads = info.head_count_kv or heads
    key_length = info.key_length or (embedding // heads if heads else 0)
    value_length = info.value_length or key_length
    per_token = kv_heads * (key_length * cache_type_bytes(config.cache_type_k)
                            + value_length * cache_type_bytes(config.cache_type_v))  # fmt: skip
    kv = layers * ctx * per_token / _MIB
    gpu_kv = kv * min(1.0, share * (layers + 1) / layers) if layers and share else 0.0
    cpu_kv = kv - gpu_kv

    ubatch = config.ubatch_size or (caps.default_number("-ub", "--ubatch-size") if caps else None)
    ubatch = min(ubatch or 512, config.batch_size or ubatch or 512)
    vocab = info.vocab_size or _DEFAULT_VOCAB
    compute = ubatch * (4 * embedding + vocab) * 4 / _MIB
    if not _flash_attention(config, caps):  # the attention scores, one layer at a time
        compute += ubatch * ctx * heads * 4 / _MIB

    parts = {"weights_gpu": gpu_weights, "weights_ram": cpu_weights, "kv_gpu": gpu_kv,
             "kv_ram": cpu_kv, "compute": compute, "runtime": RUNTIME_RAM_MIB}  # fmt: skip
    on_gpu = gpu_weights + gpu_kv
    ram = cpu_weights + cpu_kv + RUNTIME_RAM_MIB
    if not gpus or share == 0.0:
        return MemoryNeed(ram_mib=ram + compute, vram_mib={}, parts=parts)
    vram = _split(on_gpu, info, config, gpus, device_totals)
    main = _main_gpu(config, gpus)
    vram[main] = vram.get(main, 0.0) + compute
    return MemoryNeed(ram_mib=ram, vram_mib=vram, parts=parts)


def _main_gpu(config: ServerConfig, gpus: Sequence[int]) -> int:
    main = config.main_gpu or 0
    return gpus[main] if main < len(gpus) else gpus[0]


def _split(
    mib: float,
    info: ModelInfo,
    config: ServerConfig,
    gpus: Sequence[int],
    totals: Mapping[int, float] | None,
) -> dict[int, float]:
    """``mib`` over the GPUs: all on the main one for ``split_mode=none``, else by
    ``tensor_split`` or, as llama.cpp does unless told, in proportion to their memory."""
    if config.split_mode == "none" or len(gpus) == 1:
        return {_main_gpu(config, gpus): mib}
    if config.tensor_split:
        weights = list(config.tensor_split[: len(gpus)])
        weights += [0.0] * (len(gpus) - len(weights))
    else:
        weights = [float((totals or {}).get(g, 1.0)) for g in gpus]
    whole = sum(weights) or 1.0
    return {g: mib * w / whole for g, w in zip(gpus, weights, strict=True) if w > 0}
