"""What a benchmark runs: :class:`BenchConfig`, the seed's benchmark request, typed.

Every key of the seed's ``POST /api/v1/benchmark`` body keeps its name and meaning
(``n_prompt``, ``n_gen``, ... ``progress``); fields that only newer llama-bench builds
offer (``load_mode``, ``n_cpu_moe``, ``devices``, ``no_op_offload``, ``no_warmup``) are
accepted too and refused, with the binary's version, by a build that lacks them.

Every parameter llama-bench accepts as a list takes one value or a list, a *sweep*:
llama-bench runs the cartesian product of all lists and, for each combination, one test
per prompt size, per generation size and per ``pg`` pair (:meth:`BenchConfig.expected_tests`).

>>> config = BenchConfig(n_prompt=[16, 32], n_gen=8, threads=[1, 2], repetitions=2)
>>> config.expected_tests()
6
>>> config.expected_test_names()[:3]
['pp16', 'pp32', 'tg8']

Values are checked against the seed's documented ranges when the object is built
(``poll`` 0-100, ``priority`` 0-3, 0/1 switches, cache types, split modes, output
formats, ``cpu_mask`` as hex, at most :data:`MAX_BENCH_TESTS` tests per task); every
bad field is named in one :class:`~llamaswitch.ConfigValidationError`. Unset fields
(``None``) are not passed to llama-bench, so its own defaults apply.
:meth:`BenchConfig.to_argv` maps the rest onto the flags of one binary, only through its
:class:`~llamaswitch._capabilities.Capabilities` record (legacy ``-fa 0|1`` and
``-mmp 0|1``, current ``-fa on|off|auto`` and ``-lm``).

Three seed fields are read in a specific way:

- ``cpu_mask`` is documented as ``(hex,hex)``: a comma string (``"0xff,0x0f"``) is a
  sweep of masks, as a list is, and as llama-bench reads ``-C``.

- ``tensor_split`` is one split across GPUs, written as the seed writes it
  (``"0.5,0.5"``, the proportion per GPU) or as llama-bench does (``"0.5/0.5"``); a list
  of such strings is a sweep. llama-bench itself reads commas as a sweep, so the value is
  passed with ``/`` between GPUs.
- ``output_err`` and ``progress`` are kept in the request but do not change how the
  benchmark runner calls llama-bench: it always reads stderr as ``--progress -oe jsonl``
  to follow progress and store each finished test (see
  :class:`~llamaswitch.bench.runner.BenchRunner`). :meth:`BenchConfig.to_argv` passes
  them when asked for the command line a user would type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any, Final, Literal, TypeAlias, cast

import attrs

from llamaswitch._capabilities import Capabilities
from llamaswitch._errors import ConfigValidationError
from llamaswitch._vocabulary import (
    INT32_MAX,
    Choice,
    Custom,
    Kind,
    Spec,
    Switch,
    Text,
    Whole,
    from_data,
    problems,
    spec,
    specs,
    to_data,
)
from llamaswitch.bench.parser import BENCH_OUTPUT_FORMATS, bench_test_name

# BENCH_OUTPUT_FORMATS lives with the parser (it names what it parses); it is re-exported
# here because it is also what ``output`` accepts (``output_err`` also accepts ``none``).
__all__ = ["BENCH_CACHE_TYPES", "BENCH_OUTPUT_FORMATS", "MAX_BENCH_TESTS", "BenchConfig"]

#: The most tests (result rows) one task may ask for. A sweep multiplies: a request of a
#: few kilobytes could otherwise ask llama-bench for billions of tests.
MAX_BENCH_TESTS: Final = 10_000

#: KV cache types llama.cpp knows. llama-bench accepts fewer (see _LLAMA_BENCH_CACHE_TYPES):
#: the seed documents ``f32``, so it validates here and the binary refuses it by version.
BENCH_CACHE_TYPES: Final = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")

# llama-bench's ggml_type_from_name(), identical in the legacy (b5293) and current builds.
# --help prints only "<t>", so this cannot be read from the capability record.
_LLAMA_BENCH_CACHE_TYPES: Final = ("f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_SPLIT_MODES: Final = ("none", "layer", "row", "tensor")
_LOAD_MODES: Final = ("auto", "none", "mmap", "mlock", "mmap+mlock", "dio")
_NUMA: Final = ("distribute", "isolate", "numactl")
_FLASH_WORDS: Final = ("on", "off", "auto")
# llama.cpp's LLAMA_MAX_DEVICES: more parts in a tensor split trip an assertion (abort).
_MAX_DEVICES: Final = 16
# llama-bench parses numbers with std::stoi: larger values fail as "invalid parameter".
_INT_MAX: Final = 2**31 - 1
_HEX_MASK = re.compile(r"(0[xX])?[0-9a-fA-F]{1,128}")
_FLOAT = re.compile(r"\s*(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")

FlashAttn: TypeAlias = bool | Literal["auto"]
Pair: TypeAlias = tuple[int, int]

# -- converters: user input -> the stored shape ------------------------------------------
# They are lenient on purpose: a value of the wrong type is kept as it is, so that
# __attrs_post_init__ can report every bad field at once rather than the first one.


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def _unset(value: object) -> bool:
    # The seed's bodies write "" for "not set" ("cpu_mask": "", "numa": "").
    return value is None or (isinstance(value, str) and not value.strip())


def _sweep(value: Any) -> Any:
    if _unset(value):
        return None
    return tuple(value) if _is_list(value) else (value,)


def _int_sweep(value: int | Sequence[int] | None) -> tuple[int, ...] | None:
    return cast("tuple[int, ...] | None", _sweep(value))


def _str_sweep(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    result = _sweep(value)
    if result is None:
        return None
    return tuple(v.strip() if isinstance(v, str) else v for v in result)


def _comma_sweep(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    # The seed documents cpu_mask as "(hex,hex)": a comma string is a sweep, as it is for
    # llama-bench's -C. Each item is validated on its own.
    if isinstance(value, str) and "," in value:
        return tuple(item.strip() for item in value.split(","))
    return _str_sweep(value)


def _to_bool(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return value  # reported by validation


def _bool_sweep(value: bool | int | Sequence[bool | int] | None) -> tuple[bool, ...] | None:
    result = _sweep(value)
    return None if result is None else tuple(cast("bool", _to_bool(v)) for v in result)


def _flash_value(value: object) -> object:
    if isinstance(value, str):
        word = value.strip().lower()
        return {"on": True, "off": False, "1": True, "0": False}.get(word, word)
    return _to_bool(value)


def _flash_sweep(
    value: bool | int | str | Sequence[bool | int | str] | None,
) -> tuple[FlashAttn, ...] | None:
    result = _sweep(value)
    return None if result is None else tuple(cast("FlashAttn", _flash_value(v)) for v in result)


def _pair(value: object) -> object:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 2 and all(re.fullmatch(r"\d+", p) for p in parts):
            return (int(parts[0]), int(parts[1]))
        return value
    if _is_list(value):
        return tuple(cast("Sequence[object]", value))
    return value


def _pg_sweep(value: str | Sequence[Any] | None) -> tuple[Pair, ...] | None:
    if _unset(value):
        return None
    # [512, 128] is one pair; [[512, 128], [1024, 256]] or ["512,128", ...] is a sweep.
    if _is_list(value) and not any(_is_list(v) or isinstance(v, str) for v in value):  # type: ignore[union-attr]
        return (cast("Pair", _pair(value)),)
    items = value if _is_list(value) else [value]
    return tuple(cast("Pair", _pair(v)) for v in items)  # type: ignore[union-attr]


def _optional_str(value: str | None) -> str | None:
    if _unset(value):
        return None
    return value.strip() if isinstance(value, str) else value


def _optional_scalar(value: Any) -> Any:
    return None if _unset(value) else value


def _optional_switch(value: bool | int | None) -> bool | None:
    return None if _unset(value) else cast("bool", _to_bool(value))


# -- checks: one value -> the reason it is bad, or None ----------------------------------


def _flash_check(value: object) -> str | None:
    if isinstance(value, bool) or value == "auto":
        return None
    return f"must be 0/1, true/false or on/off/auto, got {value!r}"


def _hex_mask(value: object) -> str | None:
    if not isinstance(value, str) or not _HEX_MASK.fullmatch(value):
        return f"must be a hexadecimal CPU mask such as 0xff (one per list item), got {value!r}"
    return None


def _tensor_split(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string of proportions per GPU such as '0.5,0.5', got {value!r}"
    parts = re.split(r"[,/;]", value)
    if not all(_FLOAT.fullmatch(p) for p in parts):
        return f"must be non-negative numbers separated by ',' or '/', got {value!r}"
    if len(parts) > _MAX_DEVICES:
        return f"names {len(parts)} GPUs; llama.cpp supports at most {_MAX_DEVICES}"
    return None


def _pair_check(value: object) -> str | None:
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT_MAX for v in value
        )
    )
    return None if ok else f"must be a pair 'pp,tg' or [pp, tg] of whole numbers, got {value!r}"


# The order llama-bench nests its parameter loops in (get_cmd_params_instances, same in
# both generations for the fields both have): n_depth and poll are innermost, so
# the test names repeat per depth in this order.
_PRODUCT_FIELDS: Final = (
    "n_gpu_layers",
    "n_cpu_moe",
    "split_mode",
    "load_mode",
    "mmap",
    "main_gpu",
    "devices",
    "tensor_split",
    "override_tensor",
    "embeddings",
    "no_op_offload",
    "batch_size",
    "ubatch_size",
    "cache_type_k",
    "cache_type_v",
    "no_kv_offload",
    "flash_attn",
    "threads",
    "cpu_mask",
    "cpu_strict",
)

# llama-bench's own defaults for the fields that decide which tests run.
_DEFAULT_N_PROMPT: Final = (512,)
_DEFAULT_N_GEN: Final = (128,)


# -- argv rules: how a field reaches llama-bench ----------------------------------------


def _flag_spelling(
    caps: Capabilities, field: str, value: object, names: Sequence[str]
) -> list[str]:
    """The first of ``names`` the binary knows, or UnsupportedOptionError."""
    for name in names:
        if caps.has(name):
            return [name]
    raise caps.unsupported(field, value, f"it has no {names[0]} option")


def _values_argv(
    caps: Capabilities, field: str, texts: Sequence[str], names: Sequence[str]
) -> list[str]:
    """``[flag, "a,b,c"]``, each value checked against the flag's allowed values."""
    spelling = _flag_spelling(caps, field, texts[0] if len(texts) == 1 else list(texts), names)
    caps.check_choices(field, texts, *spelling)
    return [*spelling, ",".join(texts)]


def _num(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _flags(name: str) -> tuple[str, ...]:
    return _SPECS[name].flags


def _values_rule(caps: Capabilities, config: Any, name: str) -> list[str]:
    """The default: ``flag v1,v2,...`` (llama-bench sweeps a comma list)."""
    value = getattr(config, name)
    items = value if isinstance(value, tuple) else (value,)
    return _values_argv(caps, name, [_num(v) for v in items], _flags(name))


def _switch_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    return _flag_spelling(caps, name, True, _flags(name)) if getattr(config, name) else []


def _cache_type_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    value = getattr(config, name)
    for item in value:
        if item not in _LLAMA_BENCH_CACHE_TYPES:
            raise caps.unsupported(
                name, item, f"llama-bench accepts {', '.join(_LLAMA_BENCH_CACHE_TYPES)}"
            )
    return _values_argv(caps, name, list(value), _flags(name))


def _output_err_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    if config.output_err == "none":
        # --help lists only the formats, but "none" is -oe's default and both
        # generations' output_format_from_str() accept it.
        return [*_flag_spelling(caps, name, "none", _flags(name)), "none"]
    return _values_rule(caps, config, name)


def _pg_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    # -pg takes exactly one pair per flag: repeat the flag for a sweep.
    argv: list[str] = []
    for prompt, gen in config.pg:
        argv += [*_flag_spelling(caps, name, f"{prompt},{gen}", _flags(name)), f"{prompt},{gen}"]
    return argv


def _tensor_split_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    # llama-bench reads commas as a sweep: one split is passed with "/" between GPUs.
    texts = ["/".join(p.strip() for p in re.split(r"[,/;]", item)) for item in config.tensor_split]
    return _values_argv(caps, name, texts, _flags(name))


def _mmap_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    return caps.bench_mmap_args(list(config.mmap))


def _flash_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    words: list[str] = []
    for value in config.flash_attn:
        args = caps.flash_attn_args(value)
        if len(args) != 2:
            # A bare -fa switch (llama-server style) cannot express a per-test value.
            raise caps.unsupported("flash_attn", value, "its -fa takes no value list")
        words.append(args[1])
    return ["-fa", ",".join(words)]


# -- kinds only llama-bench has -----------------------------------------------------------

_SWITCH01: Final = Switch("0 or 1 (or true/false)")
_PAIR_TEXT: Final[dict[str, Any]] = {"type": "string", "pattern": "^\\s*[0-9]+\\s*,\\s*[0-9]+\\s*$"}
_PAIR_LIST: Final[dict[str, Any]] = {
    "type": "array", "minItems": 2, "maxItems": 2,
    "prefixItems": [{"type": "integer", "minimum": 0, "maximum": INT32_MAX}] * 2,
}  # fmt: skip
_PAIR: Final = Custom(
    "a pair 'pp,tg' or [pp, tg] of whole numbers", _pair_check,
    {"anyOf": [_PAIR_TEXT, _PAIR_LIST]},
)  # fmt: skip
_HEX_MASK_KIND: Final = Custom(
    "a hexadecimal CPU mask such as 0xff", _hex_mask,
    {"type": "string", "pattern": (
        "^\\s*(0[xX])?[0-9a-fA-F]{1,128}(\\s*,\\s*(0[xX])?[0-9a-fA-F]{1,128})*\\s*$")},
)  # fmt: skip
_FLASH_KIND: Final = Custom(
    "0/1, true/false or on/off/auto", _flash_check,
    {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]},
               {"type": "string",
                "pattern": "^\\s*([oO][nN]|[oO][fF][fF]|[aA][uU][tT][oO]|0|1)\\s*$"}]},
)  # fmt: skip
_TENSOR_SPLIT_KIND: Final = Custom(
    "proportions per GPU such as '0.5,0.5'", _tensor_split, {"type": "string"}
)


def _swept(doc: str, kind: Kind, flags: tuple[str, ...], **facts: Any) -> dict[str, Spec]:
    """A field llama-bench sweeps (a value or a list); ``""`` reads as unset."""
    return spec(doc, kind, flags=flags, sweep=True, blank_unset=True, **facts)


def _single(doc: str, kind: Kind, flags: tuple[str, ...], **facts: Any) -> dict[str, Spec]:
    """A field that takes one value; ``""`` reads as unset."""
    return spec(doc, kind, flags=flags, blank_unset=True, **facts)


@attrs.frozen(kw_only=True)
class BenchConfig:
    """A llama-bench request: the seed's benchmark ``config``, plus newer builds' options.

    Every field defaults to ``None`` (not passed: llama-bench's default applies). Fields
    marked *sweep* take one value or a list of values. Switches documented as 0/1 take
    0, 1, ``False`` or ``True``. The field reference, generated from these declarations,
    is ``docs/benchmark_params.md``.

    >>> BenchConfig(n_prompt=512, n_gen=128, repetitions=5, output="md").to_dict()
    {'n_prompt': 512, 'n_gen': 128, 'repetitions': 5, 'output': 'md'}
    """

    n_prompt: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "Prompt tokens per prompt-processing test (pp; 0 skips them).",
            Whole(0),
            ("-p", "--n-prompt"),
            common=True,
        ),
    )
    n_gen: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "Tokens generated per generation test (tg; 0 skips them).",
            Whole(0),
            ("-n", "--n-gen"),
            common=True,
        ),
    )
    n_depth: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "Context depth: tokens already in the KV cache before each test.",
            Whole(0),
            ("-d", "--n-depth"),
        ),
    )
    pg: tuple[Pair, ...] | None = attrs.field(
        default=None,
        converter=_pg_sweep,
        metadata=_swept(
            "Combined tests: prompt pp then generate tg ('512,128' or [512, 128]).",
            _PAIR,
            ("-pg",),
            argv=_pg_argv,
            cli=("-pg", "--pg"),
            cli_style="repeat",
            cli_metavar="PP,TG",
        ),
    )
    batch_size: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept("Logical batch size.", Whole(1), ("-b", "--batch-size")),
    )
    ubatch_size: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept("Physical (micro) batch size.", Whole(1), ("-ub", "--ubatch-size")),
    )
    cache_type_k: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "K cache type (the seed also documents f32, which llama-bench refuses).",
            Choice(BENCH_CACHE_TYPES, padded=True),
            ("-ctk", "--cache-type-k"),
            argv=_cache_type_argv,
        ),
    )
    cache_type_v: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "V cache type.",
            Choice(BENCH_CACHE_TYPES, padded=True),
            ("-ctv", "--cache-type-v"),
            argv=_cache_type_argv,
        ),
    )
    threads: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept("CPU threads.", Whole(1), ("-t", "--threads"), common=True),
    )
    cpu_mask: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_comma_sweep,
        metadata=_swept(
            "CPU affinity mask in hex (0xff); the seed's '0xff,0x0f' sweeps.",
            _HEX_MASK_KIND,
            ("-C", "--cpu-mask"),
        ),
    )
    cpu_strict: tuple[bool, ...] | None = attrs.field(
        default=None,
        converter=_bool_sweep,
        metadata=_swept("Strict CPU placement (0/1).", _SWITCH01, ("--cpu-strict",)),
    )
    poll: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "Busy-polling level while waiting for work, 0-100.", Whole(0, 100), ("--poll",)
        ),
    )
    n_gpu_layers: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "Layers offloaded to the GPU (-1: all, on current builds).",
            Whole(-1),
            ("-ngl", "--n-gpu-layers"),
            common=True,
        ),
    )
    n_cpu_moe: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "Mixture-of-experts layers whose experts stay on the CPU (current).",
            Whole(0),
            ("-ncmoe", "--n-cpu-moe"),
        ),
    )
    split_mode: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "How to split the model over GPUs (tensor: current builds).",
            Choice(_SPLIT_MODES, padded=True),
            ("-sm", "--split-mode"),
        ),
    )
    main_gpu: tuple[int, ...] | None = attrs.field(
        default=None,
        converter=_int_sweep,
        metadata=_swept(
            "The GPU for the whole model (split none) or intermediate results.",
            Whole(0),
            ("-mg", "--main-gpu"),
        ),
    )
    devices: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "Devices joined by '/' ('CUDA0/CUDA1', 'none'; current builds).",
            Text(what="device names joined by '/' or 'none'", forbid=","),
            ("-dev", "--device"),
        ),
    )
    no_kv_offload: tuple[bool, ...] | None = attrs.field(
        default=None,
        converter=_bool_sweep,
        metadata=_swept(
            "Keep the KV cache in host memory (0/1).", _SWITCH01, ("-nkvo", "--no-kv-offload")
        ),
    )
    flash_attn: tuple[FlashAttn, ...] | None = attrs.field(
        default=None,
        converter=_flash_sweep,
        metadata=_swept(
            "Flash attention: 0/1 or auto (current builds).",
            _FLASH_KIND,
            ("-fa", "--flash-attn"),
            argv=_flash_argv,
            dialects={"legacy": "-fa 0|1", "current": "-fa on|off|auto"},
        ),
    )
    mmap: tuple[bool, ...] | None = attrs.field(
        default=None,
        converter=_bool_sweep,
        metadata=_swept(
            "Memory-map the model (0/1).",
            _SWITCH01,
            ("-mmp", "--mmap"),
            argv=_mmap_argv,
            dialects={"legacy": "-mmp 0|1", "current": "-lm mmap|none"},
        ),
    )
    load_mode: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "How to load the model (current builds); not with mmap.",
            Choice(_LOAD_MODES, padded=True),
            ("-lm", "--load-mode"),
        ),
    )
    numa: str | None = attrs.field(
        default=None,
        converter=_optional_str,
        metadata=_single("NUMA strategy.", Choice(_NUMA, padded=True), ("--numa",)),
    )
    embeddings: tuple[bool, ...] | None = attrs.field(
        default=None,
        converter=_bool_sweep,
        metadata=_swept("Embeddings mode (0/1).", _SWITCH01, ("-embd", "--embeddings")),
    )
    tensor_split: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "Proportion per GPU, '0.5,0.5' or '0.5/0.5' ('0': automatic); a list "
            "of such strings sweeps.",
            _TENSOR_SPLIT_KIND,
            ("-ts", "--tensor-split"),
            argv=_tensor_split_argv,
            cli_style="repeat",
            cli_metavar="SHARES",
        ),
    )
    override_tensor: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_str_sweep,
        metadata=_swept(
            "Tensor buffer overrides, 'pattern=buffer type' joined by ';'.",
            Text(
                forbid=",",
                pattern=r"[^=;]+=[^=;]+(;[^=;]+=[^=;]+)*",
                what="'pattern=buffer type' pairs joined by ';'",
            ),
            ("-ot", "--override-tensor", "--override-tensors"),
            cli_style="repeat",
            cli_metavar="PATTERN=BUFFER",
        ),
    )
    no_op_offload: tuple[bool, ...] | None = attrs.field(
        default=None,
        converter=_bool_sweep,
        metadata=_swept(
            "Do not offload host tensor operations to the device (0/1, current).",
            _SWITCH01,
            ("-nopo", "--no-op-offload"),
        ),
    )
    repetitions: int | None = attrs.field(
        default=None,
        converter=_optional_scalar,
        metadata=_single(
            "Runs of each test (llama-bench's default: 5).",
            Whole(1),
            ("-r", "--repetitions"),
            common=True,
        ),
    )
    priority: int | None = attrs.field(
        default=None,
        converter=_optional_scalar,
        metadata=_single(
            "Process and thread priority, 0 (normal) to 3 (realtime).",
            Whole(0, 3),
            ("--prio",),
            cli=("--prio", "--priority"),
        ),
    )
    delay: int | None = attrs.field(
        default=None,
        converter=_optional_scalar,
        metadata=_single(
            "Seconds to pause before each test (lets the hardware cool).", Whole(0), ("--delay",)
        ),
    )
    no_warmup: bool | None = attrs.field(
        default=None,
        converter=_optional_switch,
        metadata=_single(
            "Skip the warm-up run before each test (current builds).",
            _SWITCH01,
            ("--no-warmup",),
            argv=_switch_argv,
        ),
    )
    output: str | None = attrs.field(
        default=None,
        converter=_optional_str,
        metadata=_single(
            "Format of the verbatim output: csv, json, jsonl, md (default), sql.",
            Choice(BENCH_OUTPUT_FORMATS, padded=True),
            ("-o", "--output"),
        ),
    )
    output_err: str | None = attrs.field(
        default=None,
        converter=_optional_str,
        metadata=_single(
            "llama-bench's stderr format; kept, but the runner reads jsonl there.",
            Choice((*BENCH_OUTPUT_FORMATS, "none"), padded=True),
            ("-oe", "--output-err"),
            argv=_output_err_argv,
            cli=(),
        ),
    )
    verbose: bool | None = attrs.field(
        default=None,
        converter=_optional_switch,
        metadata=_single(
            "llama-bench's verbose logging (0/1), into the stderr tail.",
            _SWITCH01,
            ("-v", "--verbose"),
            argv=_switch_argv,
        ),
    )
    progress: bool | None = attrs.field(default=None, converter=_optional_switch,
        metadata=_single("Progress lines on stderr (0/1); the runner always asks for them.",
                         _SWITCH01, ("--progress",), argv=_switch_argv, cli=()))  # fmt: skip

    def __attrs_post_init__(self) -> None:
        errors = _validate(self)
        if errors:
            raise ConfigValidationError(errors)

    # -- construction and wire shape ------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BenchConfig:
        """Build from a JSON object such as the seed's request ``config``; strict.

        Unknown keys are rejected by name, together with any invalid value; ``""`` and
        ``null`` mean "not set".

        >>> BenchConfig.from_dict({"n_prompt": 512, "cpu_mask": "", "flash_attn": 0}).flash_attn
        (False,)
        """
        config: BenchConfig = from_data(cls, data)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The set fields as JSON-ready data; a one-value sweep is written as the value."""
        return to_data(self)

    def evolve(self, **changes: Any) -> BenchConfig:
        """A copy with some fields changed (validated again)."""
        return attrs.evolve(self, **changes)

    @property
    def output_format(self) -> str:
        """The format of the verbatim output: ``output``, or llama-bench's default ``md``."""
        return self.output or "md"

    # -- what llama-bench will do ---------------------------------------------------------

    def _combinations(self) -> int:
        count = 1
        for name in _PRODUCT_FIELDS:
            value = getattr(self, name)
            count *= len(value) if value else 1
        return count

    def _sizes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[Pair, ...]]:
        """The prompt, generation and ``pg`` sizes that make tests (0 and (0, 0) do not)."""
        prompts = self.n_prompt if self.n_prompt is not None else _DEFAULT_N_PROMPT
        gens = self.n_gen if self.n_gen is not None else _DEFAULT_N_GEN
        return (
            tuple(p for p in prompts if p != 0),
            tuple(g for g in gens if g != 0),
            tuple(pair for pair in (self.pg or ()) if pair != (0, 0)),
        )

    def _tests_per_depth(self, depth: int) -> list[str]:
        prompts, gens, pairs = self._sizes()
        names = [bench_test_name(p, 0, depth) for p in prompts]
        names += [bench_test_name(0, g, depth) for g in gens]
        names += [bench_test_name(p, g, depth) for p, g in pairs]
        return names

    def expected_test_names(self) -> list[str]:
        """The tests llama-bench will run, in its order, named as it names them.

        For each combination of the swept parameters: the prompt tests, then the
        generation tests, then the ``pg`` tests, at each depth. A sweep over threads
        therefore repeats the same names once per thread count. At most
        :data:`MAX_BENCH_TESTS` names: validation refuses larger sweeps.
        """
        depths = self.n_depth or (0,)
        polls = len(self.poll) if self.poll else 1
        per_combination = [
            name for depth in depths for _ in range(polls) for name in self._tests_per_depth(depth)
        ]
        return per_combination * self._combinations()

    def expected_tests(self) -> int:
        """How many tests (result rows) llama-bench will run for this config.

        Counted, not listed: it is also how validation refuses a sweep too large to list.
        """
        per_depth = sum(len(sizes) for sizes in self._sizes())
        depths = len(self.n_depth) if self.n_depth else 1
        polls = len(self.poll) if self.poll else 1
        return per_depth * depths * polls * self._combinations()

    # -- argv -----------------------------------------------------------------------------

    def to_argv(
        self,
        caps: Capabilities,
        model_path: str | PathLike[str],
        *,
        structured_stderr: bool = False,
    ) -> list[str]:
        """The llama-bench arguments (without the program) for one binary.

        Only set fields are passed. Raises :class:`~llamaswitch.UnsupportedOptionError`,
        naming the binary's version, for a setting this binary cannot honour.

        ``structured_stderr`` makes stderr carry ``--progress -oe jsonl`` whatever
        ``progress`` and ``output_err`` say: that is how the runner follows a task.
        """
        argv = [*_flag_spelling(caps, "model", str(model_path), ("-m", "--model")), str(model_path)]
        for name, field_spec in _SPECS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if structured_stderr and name in {"output_err", "progress"}:
                continue
            rule = field_spec.argv or _values_rule
            argv += rule(caps, self, name)
        if structured_stderr:
            argv += _flag_spelling(caps, "progress", True, ("--progress",))
            argv += _values_argv(caps, "output_err", ["jsonl"], _SPECS["output_err"].flags)
        return argv


# -- validation -----------------------------------------------------------------------------


def _validate(config: BenchConfig) -> list[tuple[str, str]]:
    errors = problems(config)
    if config.mmap is not None and config.load_mode is not None:
        errors.append(("load_mode", "set either mmap or load_mode, not both (both map to -lm)"))
    if not errors:  # the count needs valid sizes
        count = config.expected_tests()
        if count > MAX_BENCH_TESTS:
            errors.append(
                (
                    "config",
                    f"the sweep asks for {count:,} tests; at most {MAX_BENCH_TESTS:,} per task",
                )
            )
    return errors


_SPECS: Final = specs(BenchConfig)
