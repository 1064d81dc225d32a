"""How one llama-server is run: :class:`ServerConfig`, its validation and its argv.

A ``ServerConfig`` carries the settings of the seed API's switch examples (``host``,
``port``, ``threads``, ``ctx_size``, ``n_gpu_layers``, ``flash_attn``, ``tensor_split``,
``mlock``...) plus what users need beyond them (``parallel``, ``alias``, ``no_mmap``,
``extra_args``, ``env``, the restart policy: ``restart``, ``restart_max``,
``restart_backoff_s``, and ``cpu_scheduling``). Every field is optional: ``None`` means
"not passed", so llama.cpp's own default applies. Each field is declared once, with its
:class:`~llamaswitch._vocabulary.Spec`: validation, the JSON Schema, the CLI options,
``docs/model_params.md`` and the flags ``extra_args`` may not carry all derive from it.

Values are checked when the object is built; every bad field is reported at once, each
message naming its field::

    >>> ServerConfig(threads=0, cache_type_k="f8")
    Traceback (most recent call last):
    ...
    llamaswitch._errors.ConfigValidationError: threads: must be a whole number from 1 to 4096, \
got 0; cache_type_k: must be one of f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1, got 'f8'

The argv is built only through the binary's
:class:`~llamaswitch._capabilities.Capabilities` (read from its ``--help``), so one config
works with both flag dialects: ``flash_attn=True`` becomes ``-fa`` on a legacy build and
``-fa on`` on a current one, ``mlock=True`` becomes ``--mlock`` or ``--load-mode
mmap+mlock``. What a binary cannot honour raises
:class:`~llamaswitch._errors.UnsupportedOptionError` naming its version.
"""

from __future__ import annotations

import ipaddress
import math
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs

from llamaswitch._binaries import BinaryInfo
from llamaswitch._capabilities import Capabilities
from llamaswitch._errors import ConfigValidationError
from llamaswitch._text import text_problem
from llamaswitch._vocabulary import (
    MODEL_PORT,
    Choice,
    Custom,
    Number,
    Switch,
    Text,
    Whole,
    field_flags,
    from_data,
    problems,
    spec,
    specs,
    to_data,
)

__all__ = [
    "CACHE_TYPES",
    "ENV_NAMES",
    "ENV_PREFIXES",
    "FIELD_FLAGS",
    "FORBIDDEN_FLAGS",
    "RPC_FLAGS",
    "SPLIT_MODES",
    "CpuScheduling",
    "FlashAttn",
    "GpuLayers",
    "RestartPolicy",
    "ServerConfig",
    "env_flag",
    "env_problem",
    "flag_problem",
    "host_problem",
]

FlashAttn: TypeAlias = bool | Literal["on", "off", "auto"]
GpuLayers: TypeAlias = int | Literal["auto", "all"]
RestartPolicy: TypeAlias = Literal["no", "on-failure"]
CpuScheduling: TypeAlias = Literal["auto", "batch", "normal"]

#: KV cache types llama.cpp knows; a binary may still refuse some (checked by its --help).
CACHE_TYPES: tuple[str, ...] = (
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1",
)  # fmt: skip
#: Split modes llama.cpp knows; ``tensor`` exists on current builds only.
SPLIT_MODES: tuple[str, ...] = ("none", "layer", "row", "tensor")
#: The largest C float: what llama.cpp's float options (read with std::stof) can hold.
FLOAT32_MAX = 3.4028234663852886e38
#: llama-server's ``--pooling`` values (both generations).
POOLING_TYPES: tuple[str, ...] = ("none", "mean", "cls", "last", "rank")
_FLASH_ATTN_WORDS = ("on", "off", "auto")
_RESTART_POLICIES = ("no", "on-failure")
_CPU_SCHEDULING = ("auto", "batch", "normal")
_MAX_RESTARTS = 1000
_MAX_BACKOFF_S = 3600.0

#: Flags ``extra_args`` may not carry, and why. The supervisor chooses the model, the
#: address and the port (servers are keyed by port, and the REST API's port is never
#: handed out); the rest would turn one model server into something else (a router, a
#: downloader, a static file server) or make it exit at once.
FORBIDDEN_FLAGS: Mapping[str, str] = types.MappingProxyType({
    **dict.fromkeys(("-m", "--model"), "the supervisor passes the model; use the model argument"),
    **dict.fromkeys(("--host",), "the supervisor passes the address; use the host field"),
    **dict.fromkeys(("--port",), "the supervisor passes the port; use the port field"),
    **dict.fromkeys(
        ("--models-dir", "--models-preset", "--models-max", "--models-autoload",
         "--no-models-autoload"),
        "router mode is not managed by llamaswitch; switch models through llamaswitch",
    ),
    **dict.fromkeys(
        ("-mu", "--model-url", "-hf", "-hfr", "--hf-repo", "-hff", "--hf-file", "-hfv",
         "-hfrv", "--hf-repo-v", "-hffv", "--hf-file-v", "-dr", "--docker-repo"),
        "downloading models is not allowed; put the model in the models folder",
    ),
    **dict.fromkeys(("-mmu", "--mmproj-url"), "downloading projectors is not allowed"),
    **dict.fromkeys(("--path",), "serving files from an arbitrary folder is not allowed"),
    **dict.fromkeys(
        ("-hfd", "-hfrd", "--hf-repo-draft", "--spec-draft-hf"),
        "downloading models is not allowed; put the model in the models folder",
    ),
    **dict.fromkeys(
        ("--log-file", "--slot-save-path", "--ssl-key-file", "--ssl-cert-file",
         "--api-key-file", "--chat-template-file", "--grammar-file", "-jf",
         "--json-schema-file", "-lcs", "--lookup-cache-static", "-lcd",
         "--lookup-cache-dynamic", "--ui-config-file", "--webui-config-file",
         "--media-path", "--log-prompts-dir"),
        "it reads or writes a file path chosen by whoever sends the request; the supervisor "
        "keeps the logs",
    ),
    **dict.fromkeys(
        ("-mm", "--mmproj", "-md", "--model-draft", "--spec-draft-model", "-mv",
         "--model-vocoder", "--lora", "--lora-scaled", "--control-vector",
         "--control-vector-scaled"),
        "it loads weights from a file path chosen by whoever sends the request, past the "
        "models folder's checks; only the model argument loads weights",
    ),
    **dict.fromkeys(
        ("--video-ffmpeg-dir",),
        "it runs the ffmpeg programs of a folder chosen by whoever sends the request",
    ),
    **dict.fromkeys(
        ("--tools", "--tools-runtime", "--mcp-servers-config", "--mcp-servers-json", "-ag",
         "--agent", "--ui-mcp-proxy", "--webui-mcp-proxy"),
        "agent tools run shell commands and edit files for whoever can reach the server",
    ),
    **dict.fromkeys(
        ("-h", "--help", "--usage", "--version", "--completion-bash", "--list-devices",
         "-cl", "--cache-list"),
        "it makes llama-server print something and exit",
    ),
    **dict.fromkeys(
        ("--api-prefix",),
        "it moves every route, /health included: the supervisor could never see the "
        "server ready, and the gateway could not reach it",
    ),
    **dict.fromkeys(
        ("--api-key",),
        "the supervisor gives each server that listens beyond loopback a key of its own",
    ),
})  # fmt: skip

#: llama.cpp's RPC flag: it sends the model's weights to the hosts it names. Allowed only
#: toward the hosts of the ``LLAMASWITCH_RPC_HOSTS`` setting (checked by the supervisor).
RPC_FLAGS: frozenset[str] = frozenset({"--rpc"})

#: The environment a server may be given (``env``): an allow-list. Only variables that tune
#: a GPU runtime or OpenMP are known to be safe; anything else (the dynamic linker's
#: ``LD_*``, ``GCONV_PATH``, ``PATH``...) could load code or write files. ``LLAMA_ARG_*``
#: variables are llama.cpp's twins of its flags: allowed when that flag would be allowed
#: in ``extra_args``. docs/configuration.md states the list.
ENV_PREFIXES: tuple[str, ...] = ("CUDA_", "HIP_", "GGML_", "OMP_", "LLAMA_ARG_")
#: Further variables allowed by exact name (device selection and thread counts).
ENV_NAMES: frozenset[str] = frozenset({
    "ROCR_VISIBLE_DEVICES", "HSA_OVERRIDE_GFX_VERSION", "ONEAPI_DEVICE_SELECTOR",
    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
})  # fmt: skip
#: Words that make a name refused whatever its prefix: such a variable names a path to
#: read, write or load (``CUDA_CACHE_PATH``, ``OMP_TOOL_LIBRARIES``, ``GGML_BACKEND_PATH``).
_ENV_PATH_WORDS = frozenset({
    "PATH", "PATHS", "DIR", "DIRS", "DIRECTORY", "FILE", "FILES", "FILENAME", "FILENAMES",
    "LIB", "LIBS", "LIBRARY", "LIBRARIES", "PRELOAD", "OUTPUT", "INJECTION64", "URL",
})  # fmt: skip
#: ``LLAMA_ARG_*`` names that do not follow the ``--flag-name`` convention.
_ENV_FLAG_EXCEPTIONS: Mapping[str, str] = types.MappingProxyType({
    "LLAMA_ARG_BATCH": "--batch-size", "LLAMA_ARG_UBATCH": "--ubatch-size",
    "LLAMA_ARG_N_PARALLEL": "--parallel", "LLAMA_ARG_STATIC_PATH": "--path",
    "LLAMA_ARG_HFD_REPO": "--hf-repo-draft", "LLAMA_ARG_SPEC_DRAFT_HF_REPO": "--hf-repo-draft",
    "LLAMA_ARG_ENDPOINT_METRICS": "--metrics", "LLAMA_ARG_ENDPOINT_SLOTS": "--slots",
    "LLAMA_ARG_ENDPOINT_PROPS": "--props", "LLAMA_ARG_NO_ENDPOINT_SLOTS": "--no-slots",
})  # fmt: skip


#: Built-in model presets (``--gpt-oss-20b-default``, ``--fim-qwen-7b-spec``...) download
#: weights from the internet.
_PRESET_FLAG = re.compile(r"^--(?:embd|fim|gpt-oss|vision)-[\w.-]+-(?:default|spec)$")

_MAX_GPU_LAYERS = 9999
#: What "all layers" becomes on builds whose -ngl takes numbers only: llama.cpp clamps
#: the count to the model's layers. Above _MAX_GPU_LAYERS so that it reads back as "all".
_LEGACY_ALL_LAYERS = "99999"


# -- lenient converters: shape what can be shaped, leave the rest for validation ----------


def _to_tensor_split(value: object) -> object:
    """``"0.5,0.5"`` (or ``"3/1"``, llama.cpp's other separator) or a list -> floats."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("/", ",").split(",")]
        try:
            return tuple(float(p) for p in parts)
        except ValueError:
            return value
    if isinstance(value, list | tuple):
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return tuple(float(v) for v in value)
        return tuple(value)
    return value


def _to_str_tuple(value: object) -> object:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else value


def _to_env(value: object) -> object:
    if value is None:
        return types.MappingProxyType({})
    if isinstance(value, Mapping):
        return types.MappingProxyType(dict(value))
    return value


def _to_bool(value: object) -> object:
    # JSON bodies written for llama-bench use 0/1 for switches (the seed's benchmark
    # examples do); accept them here too rather than make users remember which is which.
    if type(value) is int and value in (0, 1):
        return bool(value)
    return value


def _to_seconds(value: object) -> object:
    # 1 and 1.0 are the same duration; keep one type, so equal configs compare equal.
    if type(value) is int:
        return float(value)
    return value


def _to_gpu_layers(value: object) -> object:
    # Settings document GPU_LAYERS=-1 as "all layers"; keep one spelling for it.
    if type(value) is int and value == -1:
        return "all"
    return value


def _to_restart(value: object) -> object:
    return "no" if value is None else value


def _to_cpu_scheduling(value: object) -> object:
    return "auto" if value is None else value


# -- the kinds only a server config has --------------------------------------------------

# RFC 1123 host name labels: what getaddrinfo can look up without the IDNA codec (which
# raises on empty or overlong labels, so "a..b" would be a 500 instead of a clear 422).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_HOST_NAME = 253


def host_problem(value: object) -> str | None:
    """Why ``value`` is no IP address or host name llama-server could listen on, or None.

    Syntax only: whether the name resolves, and to an address of this machine, is
    checked by the supervisor before it acts.
    """
    reason = Text(what="an IP address or host name such as 127.0.0.1").problem(value)
    if reason:
        return reason
    assert isinstance(value, str)  # noqa: S101 - narrowed by _text
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    name = value.removesuffix(".")
    if (
        len(name) > _MAX_HOST_NAME
        or not name
        or not all(_LABEL.fullmatch(label) for label in name.split("."))
    ):
        return (
            "must be an IP address or a host name of dot-separated labels of 1 to 63 "
            f"letters, digits or '-' (ASCII; IDN names in their xn-- form), got {value!r}"
        )
    return None


def _gpu_layers_problem(value: object) -> str | None:
    if value in ("auto", "all") or Whole(0, _MAX_GPU_LAYERS).accepts(value):
        return None
    return (f"must be a whole number from 0 to {_MAX_GPU_LAYERS}, -1 or 'all' (every layer), "
            f"or 'auto', got {value!r}")  # fmt: skip


def _flash_attn_problem(value: object) -> str | None:
    if isinstance(value, bool) or value in _FLASH_ATTN_WORDS:
        return None
    return f"must be true/false or one of on, off, auto, got {value!r}"


def _tensor_split_problem(value: object) -> str | None:
    expected = 'must be a list of numbers >= 0 or a text like "0.5,0.5"'
    if not isinstance(value, tuple) or not value:
        return f"{expected}, got {value!r}"
    if not all(isinstance(v, float) for v in value):
        return f"{expected}, got {list(value)!r}"
    if len(value) > 128:
        return f"must list at most 128 GPUs, got {len(value)}"
    if not all(math.isfinite(v) and v >= 0 for v in value):
        return f"{expected}, got {list(value)!r}"
    if not any(v > 0 for v in value):
        return f"needs at least one share above 0, got {list(value)!r}"
    return None


def _flag_name(arg: str) -> str:
    # llama.cpp itself has no `--flag=value` form, but refuse the forbidden flags in that
    # shape too in case a build learns it.
    return arg.split("=", 1)[0]


def flag_problem(arg: str) -> str | None:
    """Why ``extra_args`` may not carry ``arg`` (``--flag=value`` included), or None.

    Refused: what the supervisor controls or what would make the server something else
    (:data:`FORBIDDEN_FLAGS`), built-in presets (they download weights), and the flags of
    typed fields (:data:`FIELD_FLAGS`: set the field, whose value is checked).
    """
    name = _flag_name(arg)
    reason = FORBIDDEN_FLAGS.get(name)
    if reason is None and _PRESET_FLAG.match(name):
        reason = "model presets download weights; put the model in the models folder"
    if reason is None and name in FIELD_FLAGS:
        reason = f"use the field {FIELD_FLAGS[name]}, whose value is checked"
    return reason


def env_flag(name: str) -> str | None:
    """The flag llama.cpp reads a ``LLAMA_ARG_*`` variable as (by its naming convention)."""
    upper = name.upper()
    if not upper.startswith("LLAMA_ARG_"):
        return None
    return _ENV_FLAG_EXCEPTIONS.get(upper) or "--" + upper[len("LLAMA_ARG_") :].lower().replace(
        "_", "-"
    )


def env_problem(name: str) -> str | None:
    """Why ``env`` may not set the variable ``name``, or None (see :data:`ENV_PREFIXES`)."""
    upper = name.upper()
    if not (upper.startswith(ENV_PREFIXES) or upper in ENV_NAMES):
        allowed = ", ".join([*(f"{p}*" for p in ENV_PREFIXES), *sorted(ENV_NAMES)])
        return (
            f"only variables known to be safe for llama.cpp are accepted ({allowed}); "
            "see docs/configuration.md"
        )
    if set(upper.split("_")) & _ENV_PATH_WORDS:
        return "it names a path to read, write or load, chosen by whoever sends the request"
    flag = env_flag(upper)
    if flag is not None:
        reason = flag_problem(flag)
        if reason is not None:
            return f"llama.cpp reads it as {flag}, which is not allowed: {reason}"
    return None


def _extra_args_problem(value: object) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(a, str) for a in value):
        return f"must be a list of strings, got {value!r}"
    for arg in value:
        if (problem := text_problem(arg)) is not None:
            return problem
        reason = flag_problem(arg)
        if reason is not None:
            return f"{_flag_name(arg)} is not allowed: {reason}"
    return None


def _env_problem(value: object) -> str | None:
    if not isinstance(value, Mapping):
        return f"must be an object of NAME: value strings, got {value!r}"
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or text_problem(key) is not None:
            return f"{key!r} is not a valid environment variable name"
        if not isinstance(item, str) or text_problem(item) is not None:
            return f"{key} must be a string without NUL characters or lone surrogates, got {item!r}"
        reason = env_problem(key)
        if reason is not None:
            return f"{key} is not allowed: {reason}"
    return None


_HOST = Custom(
    "an IP address or host name such as 127.0.0.1", host_problem,
    {"type": "string", "minLength": 1},
)  # fmt: skip
_GPU_LAYERS = Custom(
    f"a number of layers from 0 to {_MAX_GPU_LAYERS}, -1 or 'all', or 'auto' (current builds)",
    _gpu_layers_problem,
    {"anyOf": [{"type": "integer", "minimum": -1, "maximum": _MAX_GPU_LAYERS},
               {"enum": ["auto", "all"]}]},
)  # fmt: skip
_FLASH_ATTN = Custom(
    "true/false or on, off, auto (auto: current builds)", _flash_attn_problem,
    {"anyOf": [{"type": "boolean"}, {"enum": ["on", "off", "auto", 0, 1]}]},
)  # fmt: skip
_TENSOR_SPLIT = Custom(
    'shares per GPU: "0.5,0.5" or [0.5, 0.5]', _tensor_split_problem,
    {"anyOf": [{"type": "string", "minLength": 1},
               {"type": "array", "items": {"type": "number", "minimum": 0},
                "minItems": 1, "maxItems": 128}]},
)  # fmt: skip
_EXTRA_ARGS = Custom(
    "a list of further llama-server arguments", _extra_args_problem,
    {"type": "array", "items": {"type": "string"}},
)  # fmt: skip
_ENV = Custom(
    "an object of NAME: value strings (allowed names only)", _env_problem,
    {"type": "object", "additionalProperties": {"type": "string"}},
)  # fmt: skip


# -- argv rules: how a field reaches llama-server -----------------------------------------


def _gpu_layers_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    return caps.gpu_layers_args(getattr(config, name), legacy_all=_LEGACY_ALL_LAYERS)


def _flash_attn_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    return caps.flash_attn_args(getattr(config, name))


def _tensor_split_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    text = ",".join(repr(float(v)) for v in getattr(config, name))
    return caps.option(name, text, "-ts", "--tensor-split")


def _switch_argv(*flags: str) -> Callable[[Capabilities, Any, str], list[str]]:
    """The rule of a plain switch: its flag when true, nothing otherwise.

    One closure per field: ``to_argv`` passes each rule once, and a shared one would
    stand for the first field only.
    """

    def rule(caps: Capabilities, config: Any, name: str) -> list[str]:
        return caps.switch(name, *flags) if getattr(config, name) else []

    return rule


def _load_argv(caps: Capabilities, config: Any, name: str) -> list[str]:
    # mlock and no_mmap are one setting on current builds (--load-mode): passed together.
    return caps.server_load_args(mlock=config.mlock, no_mmap=config.no_mmap)


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Settings of one llama-server (frozen; ``None`` = not passed, llama.cpp's default).

    >>> ServerConfig(port=8091, threads=2, ctx_size=256, flash_attn=True).to_dict()
    {'port': 8091, 'threads': 2, 'ctx_size': 256, 'flash_attn': True}

    Build one from a JSON body with :meth:`from_dict` (unknown keys are refused). The
    field reference, generated from these declarations, is ``docs/model_params.md``.
    """

    host: str | None = attrs.field(
        default=None,
        metadata=spec(
            "Address llama-server listens on (default 127.0.0.1); beyond loopback it gets a key.",
            _HOST,
            flags=("--host",),
            passed=False,
            default_doc="`127.0.0.1`",
        ),
    )
    port: int | None = attrs.field(
        default=None,
        metadata=spec(
            "TCP port: switch takes the default model port, start a free one of the range.",
            MODEL_PORT,
            flags=("--port",),
            passed=False,
            default_doc="(picked)",
            common=True,
        ),
    )
    threads: int | None = attrs.field(
        default=None,
        metadata=spec(
            "CPU threads for generation.", Whole(1, 4096), flags=("-t", "--threads"), common=True
        ),
    )
    threads_batch: int | None = attrs.field(
        default=None,
        metadata=spec(
            "CPU threads for prompt processing.", Whole(1, 4096), flags=("-tb", "--threads-batch")
        ),
    )
    ctx_size: int | None = attrs.field(
        default=None,
        metadata=spec(
            "Context size in tokens (0: the model's), shared by the slots.",
            Whole(0),
            flags=("-c", "--ctx-size"),
            common=True,
        ),
    )
    batch_size: int | None = attrs.field(
        default=None, metadata=spec("Logical batch size.", Whole(1), flags=("-b", "--batch-size"))
    )
    ubatch_size: int | None = attrs.field(
        default=None,
        metadata=spec("Physical (micro) batch size.", Whole(1), flags=("-ub", "--ubatch-size")),
    )
    n_gpu_layers: GpuLayers | None = attrs.field(
        default=None,
        converter=_to_gpu_layers,
        metadata=spec(
            "Layers offloaded to GPUs: a count, -1 or 'all', 'auto'. Unset: GPU_LAYERS.",
            _GPU_LAYERS,
            flags=("-ngl", "--gpu-layers", "--n-gpu-layers"),
            argv=_gpu_layers_argv,
            cli_metavar="N|all|auto",
            common=True,
        ),
    )
    flash_attn: FlashAttn | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Flash attention: true/false or on/off/auto (a bare -fa: on).",
            _FLASH_ATTN,
            flags=("-fa", "--flash-attn"),
            argv=_flash_attn_argv,
            dialects={"legacy": "-fa (a switch; no auto)", "current": "-fa on|off|auto"},
            cli_style="optional",
            cli_metavar="on|off|auto",
            common=True,
        ),
    )
    split_mode: str | None = attrs.field(
        default=None,
        metadata=spec(
            "How to split the model over GPUs (tensor: current builds).",
            Choice(SPLIT_MODES),
            flags=("-sm", "--split-mode"),
        ),
    )
    tensor_split: tuple[float, ...] | None = attrs.field(
        default=None,
        converter=_to_tensor_split,
        metadata=spec(
            'Share of the model per GPU: "0.5,0.5" or [0.5, 0.5]; kept as floats.',
            _TENSOR_SPLIT,
            flags=("-ts", "--tensor-split"),
            argv=_tensor_split_argv,
            cli_metavar="SHARES",
        ),
    )
    main_gpu: int | None = attrs.field(
        default=None,
        metadata=spec(
            "The GPU for the whole model (split none) or for intermediate results.",
            Whole(0, 1023),
            flags=("-mg", "--main-gpu"),
        ),
    )
    mlock: bool | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Keep the model in RAM (no swapping).",
            Switch(),
            flags=("--mlock", "-lm", "--load-mode"),
            argv=_load_argv,
            cli=("--mlock",),
            dialects={"legacy": "--mlock", "current": "--load-mode mmap+mlock"},
        ),
    )
    cache_type_k: str | None = attrs.field(
        default=None,
        metadata=spec("K cache type.", Choice(CACHE_TYPES), flags=("-ctk", "--cache-type-k")),
    )
    cache_type_v: str | None = attrs.field(
        default=None,
        metadata=spec("V cache type.", Choice(CACHE_TYPES), flags=("-ctv", "--cache-type-v")),
    )
    parallel: int | None = attrs.field(
        default=None,
        metadata=spec(
            "Server slots: requests served at once (each gets ctx_size / parallel tokens).",
            Whole(1, 4096),
            flags=("-np", "--parallel"),
            common=True,
        ),
    )
    alias: str | None = attrs.field(
        default=None,
        metadata=spec(
            "Model name the server reports through its API.", Text(), flags=("-a", "--alias")
        ),
    )
    no_mmap: bool | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Do not memory-map the model (read it into memory).",
            Switch(),
            flags=("--no-mmap", "--mmap"),
            argv=_load_argv,
            cli=("--no-mmap",),
            dialects={"legacy": "--no-mmap", "current": "--load-mode none"},
        ),
    )
    rope_freq_base: float | None = attrs.field(
        default=None,
        metadata=spec(
            "RoPE base frequency (NTK-aware scaling); unset: the model's.",
            # llama-server reads it as a C float (std::stof): a larger value makes it exit.
            Number(above=0, high=FLOAT32_MAX, unit=""),
            flags=("--rope-freq-base",),
        ),
    )
    n_cpu_moe: int | None = attrs.field(
        default=None,
        metadata=spec(
            "Keep the MoE expert weights of the first N layers in RAM (current builds).",
            Whole(0),
            flags=("-ncmoe", "--n-cpu-moe"),
        ),
    )
    embeddings: bool | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Serve an embedding model: /v1/embeddings (and no text generation).",
            Switch(),
            flags=("--embedding", "--embeddings"),
            argv=_switch_argv("--embedding", "--embeddings"),
        ),
    )
    pooling: str | None = attrs.field(
        default=None,
        metadata=spec(
            "Pooling of embeddings; unset: the model's.",
            Choice(POOLING_TYPES),
            flags=("--pooling",),
        ),
    )
    reranking: bool | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Serve a reranker model: /v1/rerank.",
            Switch(),
            flags=("--rerank", "--reranking"),
            argv=_switch_argv("--rerank", "--reranking"),
        ),
    )
    metrics: bool | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Prometheus metrics at the server's own /metrics.",
            Switch(),
            flags=("--metrics",),
            argv=_switch_argv("--metrics"),
        ),
    )
    mmproj: bool | None = attrs.field(
        default=None,
        converter=_to_bool,
        metadata=spec(
            "Load the multimodal projector the catalog pairs with the model (mmproj*.gguf "
            "beside it), for image input. Unset: yes, when there is one.",
            Switch(),
            passed=False,
        ),
    )
    extra_args: tuple[str, ...] = attrs.field(
        default=(),
        converter=_to_str_tuple,
        metadata=spec(
            "Further llama-server arguments, passed last as a list (never a shell); flags "
            "llamaswitch controls or a typed field sets are refused.",
            _EXTRA_ARGS,
            passed=False,
            cli=("--extra-arg",),
            cli_style="repeat",
            cli_metavar="ARG",
        ),
    )
    env: Mapping[str, str] = attrs.field(
        factory=lambda: types.MappingProxyType({}),
        converter=_to_env,
        hash=False,
        metadata=spec(
            "Extra environment variables of the server process (an allow-list: see "
            "docs/configuration.md).",
            _ENV,
            passed=False,
            cli=("--env",),
            cli_style="repeat",
            cli_metavar="NAME=VALUE",
            default_doc="(none)",
        ),
    )
    restart: RestartPolicy = attrs.field(
        default="no",
        converter=_to_restart,
        metadata=spec(
            "After a crash: no, or on-failure (restarts with backoff).",
            Choice(_RESTART_POLICIES),
            passed=False,
        ),
    )
    restart_max: int | None = attrs.field(
        default=None,
        metadata=spec(
            "With on-failure: restarts in a row before giving up (unset: 5).",
            Whole(0, _MAX_RESTARTS),
            passed=False,
            default_doc="`5`",
        ),
    )
    restart_backoff_s: float | None = attrs.field(default=None, converter=_to_seconds,
        metadata=spec(
        "With on-failure: first wait before a restart, doubled each time, at most 30 s.",
        Number(0, _MAX_BACKOFF_S), passed=False, cli=("--restart-backoff",),
        default_doc="`0.5`"))  # fmt: skip

    cpu_scheduling: CpuScheduling = attrs.field(
        default="auto",
        converter=_to_cpu_scheduling,
        metadata=spec(
            "Linux's CPU scheduling of the server: batch (SCHED_BATCH: its threads do not "
            "preempt running ones on waking, so they stop interrupting its own compute "
            "threads on a busy CPU), normal, or auto: batch while more than one gateway "
            "request runs on a server that computes on the CPU (no GPU backend beside the "
            "binary, or n_gpu_layers 0), normal otherwise. No effect elsewhere.",
            Choice(_CPU_SCHEDULING),
            passed=False,
        ),
    )

    def __attrs_post_init__(self) -> None:
        errors = problems(self)
        if errors:
            raise ConfigValidationError(errors)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, path: str = "") -> ServerConfig:
        """Build a config from a JSON object, strictly: unknown keys are refused by name.

        ``path`` prefixes the field names in error messages (``"config"`` gives
        ``config.threads: ...``), for callers that validate a larger document.

        >>> ServerConfig.from_dict({"flash_attn": True, "tensor_split": "0.5,0.5"}).tensor_split
        (0.5, 0.5)
        """
        config: ServerConfig = from_data(cls, data, path=path)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the fields that are set (and differ from their default)."""
        return to_data(self)

    def with_defaults(self, *, gpu_layers: int | None) -> ServerConfig:
        """This config with the ``GPU_LAYERS`` setting filled in when ``n_gpu_layers`` is unset."""
        if self.n_gpu_layers is not None or gpu_layers is None:
            return self
        return attrs.evolve(self, n_gpu_layers=gpu_layers)

    # -- argv ------------------------------------------------------------------------------

    def to_argv(
        self,
        binary: BinaryInfo | Capabilities,
        model_path: str | Path,
        host: str,
        port: int,
        *,
        projector: str | Path | None = None,
    ) -> list[str]:
        """llama-server's arguments (without the program) for this binary's dialect.

        ``projector`` is the catalog's multimodal projector for the model: passed as
        ``--mmproj`` unless ``mmproj`` is false (or unset, on a binary without it).

        ``host`` and ``port`` are the resolved address (the supervisor fills the config's
        defaults); every other field is passed only when set, by its spec's rule, in
        declaration order. ``extra_args`` come last. Raises
        :class:`~llamaswitch._errors.UnsupportedOptionError` for a setting the binary
        cannot honour.

        >>> from llamaswitch._capabilities import Capabilities
        >>> caps = Capabilities.from_help("llama-server", '''
        ... -m,    --model FNAME                    model path
        ... --host HOST                             ip address to listen
        ... --port PORT                             port to listen
        ... -fa,   --flash-attn                     enable Flash Attention
        ... ''')
        >>> ServerConfig(flash_attn=True).to_argv(caps, "m.gguf", "127.0.0.1", 8091)
        ['--model', 'm.gguf', '--host', '127.0.0.1', '--port', '8091', '-fa']
        """
        caps = binary.capabilities if isinstance(binary, BinaryInfo) else binary
        argv: list[str] = []
        argv += caps.option("model", str(model_path), "-m", "--model")
        argv += caps.option("host", host, "--host")
        argv += caps.option("port", port, "--port")
        # A binary without --mmproj (the legacy server) serves the model without images,
        # unless the config asks for the projector by name.
        if projector is not None and (
            self.mmproj or (self.mmproj is None and caps.has("-mm", "--mmproj"))
        ):
            argv += caps.option("mmproj", projector, "-mm", "--mmproj")
        done: set[Any] = set()
        for name, field_spec in _SPECS.items():
            rule = field_spec.argv
            if not field_spec.passed or getattr(self, name) is None or rule in done:
                continue
            if rule is None:
                argv += caps.option(name, getattr(self, name), *field_spec.flags)
            else:
                done.add(rule)
                argv += rule(caps, self, name)
        argv += self.extra_args
        # Every element a plain str: subprocess would take PathLike too, but records and
        # the status (JSON) must not carry anything else.
        return [str(a) for a in argv]


_SPECS = specs(ServerConfig)
#: Flags that a typed field sets: ``extra_args`` may not carry them (they would override
#: the checked value, ``--threads -5`` say). Derived from the fields' specs.
FIELD_FLAGS: Mapping[str, str] = types.MappingProxyType(
    {flag: name for flag, name in field_flags(ServerConfig).items() if flag not in FORBIDDEN_FLAGS}
)
