"""How one llama-server is run: :class:`ServerConfig`, its validation and its argv.

A ``ServerConfig`` carries the settings of the seed API's switch examples (``host``,
``port``, ``threads``, ``ctx_size``, ``n_gpu_layers``, ``flash_attn``, ``tensor_split``,
``mlock``...) plus what users need beyond them (``parallel``, ``alias``, ``no_mmap``,
``extra_args``, ``env``, and the restart policy: ``restart``, ``restart_max``,
``restart_backoff_s``). Every field is optional: ``None`` means "not passed",
so llama.cpp's own default applies.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs

from llamaswitch._binaries import BinaryInfo
from llamaswitch._capabilities import Capabilities
from llamaswitch._errors import ConfigValidationError
from llamaswitch._text import text_problem

__all__ = [
    "CACHE_TYPES",
    "ENV_NAMES",
    "ENV_PREFIXES",
    "FIELD_FLAGS",
    "FORBIDDEN_FLAGS",
    "MIN_MODEL_PORT",
    "RPC_FLAGS",
    "SPLIT_MODES",
    "FlashAttn",
    "GpuLayers",
    "RestartPolicy",
    "ServerConfig",
    "env_problem",
    "flag_problem",
    "host_problem",
]

FlashAttn: TypeAlias = bool | Literal["on", "off", "auto"]
GpuLayers: TypeAlias = int | Literal["auto", "all"]
RestartPolicy: TypeAlias = Literal["no", "on-failure"]

#: KV cache types llama.cpp knows; a binary may still refuse some (checked by its --help).
CACHE_TYPES: tuple[str, ...] = (
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1",
)  # fmt: skip
#: Split modes llama.cpp knows; ``tensor`` exists on current builds only.
SPLIT_MODES: tuple[str, ...] = ("none", "layer", "row", "tensor")
_FLASH_ATTN_WORDS = ("on", "off", "auto")
_RESTART_POLICIES = ("no", "on-failure")

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

#: Flags that a typed field sets: ``extra_args`` may not carry them (they would override
#: the checked value, ``--threads -5`` say). Spelled as both generations spell them.
FIELD_FLAGS: Mapping[str, str] = types.MappingProxyType({
    **dict.fromkeys(("-t", "--threads"), "threads"),
    **dict.fromkeys(("-tb", "--threads-batch"), "threads_batch"),
    **dict.fromkeys(("-c", "--ctx-size"), "ctx_size"),
    **dict.fromkeys(("-b", "--batch-size"), "batch_size"),
    **dict.fromkeys(("-ub", "--ubatch-size"), "ubatch_size"),
    **dict.fromkeys(("-ngl", "--gpu-layers", "--n-gpu-layers"), "n_gpu_layers"),
    **dict.fromkeys(("-fa", "--flash-attn"), "flash_attn"),
    **dict.fromkeys(("-sm", "--split-mode"), "split_mode"),
    **dict.fromkeys(("-ts", "--tensor-split"), "tensor_split"),
    **dict.fromkeys(("-mg", "--main-gpu"), "main_gpu"),
    **dict.fromkeys(("--mlock",), "mlock"),
    **dict.fromkeys(("--no-mmap", "--mmap"), "no_mmap"),
    **dict.fromkeys(("-lm", "--load-mode"), "mlock and no_mmap"),
    **dict.fromkeys(("-ctk", "--cache-type-k"), "cache_type_k"),
    **dict.fromkeys(("-ctv", "--cache-type-v"), "cache_type_v"),
    **dict.fromkeys(("-np", "--parallel"), "parallel"),
    **dict.fromkeys(("-a", "--alias"), "alias"),
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

_INT32_MAX = 2**31 - 1
#: Model servers listen on unprivileged ports only: below 1024 are the system's services
#: (ssh on 22...), which a typo must not be able to name.
MIN_MODEL_PORT = 1024
_MAX_RESTARTS = 1000
_MAX_BACKOFF_S = 3600.0
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


def _to_flash_attn(value: object) -> object:
    return _to_bool(value)


def _to_gpu_layers(value: object) -> object:
    # Settings document GPU_LAYERS=-1 as "all layers"; keep one spelling for it.
    if type(value) is int and value == -1:
        return "all"
    return value


# -- checks: value -> None if fine, else the reason -----------------------------------


def _whole(value: object, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"must be a whole number from {low} to {high}, got {value!r}"
    return None


def _seconds(value: object, high: float) -> str | None:
    ok = isinstance(value, float) and math.isfinite(value) and 0 <= value <= high
    if not ok:
        return f"must be a number of seconds from 0 to {high:g}, got {value!r}"
    return None


def _text(value: object, *, what: str = "a non-empty string") -> str | None:
    if not isinstance(value, str) or not value:
        return f"must be {what}, got {value!r}"
    return text_problem(value)


# RFC 1123 host name labels: what getaddrinfo can look up without the IDNA codec (which
# raises on empty or overlong labels, so "a..b" would be a 500 instead of a clear 422).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_HOST_NAME = 253


def host_problem(value: object) -> str | None:
    """Why ``value`` is no IP address or host name llama-server could listen on, or None.

    Syntax only: whether the name resolves, and to an address of this machine, is
    checked by the supervisor before it acts.
    """
    reason = _text(value, what="an IP address or host name such as 127.0.0.1")
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


def _enum(value: object, allowed: Sequence[str]) -> str | None:
    if not isinstance(value, str) or value not in allowed:
        return f"must be one of {', '.join(allowed)}, got {value!r}"
    return None


def _flag_name(arg: str) -> str:
    # llama.cpp itself has no `--flag=value` form, but refuse the forbidden flags in that
    # shape too in case a build learns it.
    return arg.split("=", 1)[0]


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Settings of one llama-server (frozen; ``None`` = not passed, llama.cpp's default).

    >>> ServerConfig(port=8091, threads=2, ctx_size=256, flash_attn=True).to_dict()
    {'port': 8091, 'threads': 2, 'ctx_size': 256, 'flash_attn': True, 'restart': 'no'}

    Build one from a JSON body with :meth:`from_dict` (unknown keys are refused).
    """

    #: Address llama-server listens on (default ``127.0.0.1``).
    host: str | None = None
    #: TCP port; ``switch`` defaults to the settings' default model port, ``start`` picks
    #: a free one from the model port range.
    port: int | None = None
    threads: int | None = None
    threads_batch: int | None = None
    #: Context size in tokens; 0 takes the model's.
    ctx_size: int | None = None
    batch_size: int | None = None
    ubatch_size: int | None = None
    #: Layers offloaded to GPUs: a count, ``"all"`` (``-1`` is read as ``"all"``) or
    #: ``"auto"`` (current builds only). Unset: the ``GPU_LAYERS`` setting, if any.
    n_gpu_layers: GpuLayers | None = attrs.field(default=None, converter=_to_gpu_layers)
    #: ``True``/``False`` or ``"on"``/``"off"``/``"auto"`` (``auto``: current builds only).
    flash_attn: FlashAttn | None = attrs.field(default=None, converter=_to_flash_attn)
    #: One of :data:`SPLIT_MODES` (``tensor``: current builds only).
    split_mode: str | None = None
    #: Share of the model per GPU: ``"0.5,0.5"`` or ``[0.5, 0.5]``; kept as floats.
    tensor_split: tuple[float, ...] | None = attrs.field(default=None, converter=_to_tensor_split)
    main_gpu: int | None = None
    #: Keep the model in RAM (``--mlock``, or ``--load-mode mmap+mlock`` on current builds).
    mlock: bool | None = attrs.field(default=None, converter=_to_bool)
    #: One of :data:`CACHE_TYPES`.
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    #: Number of server slots (concurrent requests).
    parallel: int | None = None
    #: Model name the server reports through its API.
    alias: str | None = None
    #: Do not memory-map the model (``--no-mmap``, or the matching ``--load-mode``).
    no_mmap: bool | None = attrs.field(default=None, converter=_to_bool)
    #: Further llama-server arguments, passed last, as given (so they override the typed
    #: fields). Flags the supervisor controls are refused: see :data:`FORBIDDEN_FLAGS`.
    extra_args: tuple[str, ...] = attrs.field(default=(), converter=_to_str_tuple)
    #: Extra environment variables for the server process (on top of llamaswitch's own).
    env: Mapping[str, str] = attrs.field(
        factory=lambda: types.MappingProxyType({}), converter=_to_env, hash=False
    )
    #: ``"no"``: a crashed server stays down; ``"on-failure"``: it is restarted after a
    #: non-zero exit, with backoff and a maximum number of attempts.
    restart: RestartPolicy = "no"
    #: With ``restart="on-failure"``: how many restarts may follow one another before the
    #: server is left ``crashed``/``failed`` (0 to 1000; unset: 5). A server that stayed
    #: ready for a minute before crashing starts a fresh series.
    restart_max: int | None = None
    #: With ``restart="on-failure"``: seconds before the first restart of a series, doubled
    #: for each one after it, at most 30 s (0 to 3600; unset: 0.5).
    restart_backoff_s: float | None = attrs.field(default=None, converter=_to_seconds)

    def __attrs_post_init__(self) -> None:
        errors = self._problems()
        if errors:
            raise ConfigValidationError(errors)

    # -- validation ------------------------------------------------------------------------

    def _problems(self) -> list[tuple[str, str]]:
        checks: list[tuple[str, object, str | None]] = []

        def check(name: str, reason: str | None) -> None:
            checks.append((name, getattr(self, name), reason))

        for name, low, high in (
            ("port", MIN_MODEL_PORT, 65535), ("threads", 1, 4096), ("threads_batch", 1, 4096),
            ("ctx_size", 0, _INT32_MAX), ("batch_size", 1, _INT32_MAX),
            ("ubatch_size", 1, _INT32_MAX), ("main_gpu", 0, 1023), ("parallel", 1, 4096),
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                check(name, _whole(value, low, high))
        if self.host is not None:
            check("host", host_problem(self.host))
        layers = self.n_gpu_layers
        if (
            layers is not None
            and layers not in ("auto", "all")
            and _whole(layers, 0, _MAX_GPU_LAYERS)
        ):
            check("n_gpu_layers", f"must be a whole number from 0 to {_MAX_GPU_LAYERS}, -1 or "
                  f"'all' (every layer), or 'auto', got {layers!r}")  # fmt: skip
        fa = self.flash_attn
        if fa is not None and not isinstance(fa, bool) and fa not in _FLASH_ATTN_WORDS:
            check("flash_attn", f"must be true/false or one of on, off, auto, got {fa!r}")
        if self.split_mode is not None:
            check("split_mode", _enum(self.split_mode, SPLIT_MODES))
        if self.tensor_split is not None:
            check("tensor_split", _tensor_split_problem(self.tensor_split))
        for name in ("mlock", "no_mmap"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                check(name, f"must be true or false, got {value!r}")
        for name in ("cache_type_k", "cache_type_v"):
            value = getattr(self, name)
            if value is not None:
                check(name, _enum(value, CACHE_TYPES))
        if self.alias is not None:
            check("alias", _text(self.alias))
        check("extra_args", _extra_args_problem(self.extra_args))
        check("env", _env_problem(self.env))
        check("restart", _enum(self.restart, _RESTART_POLICIES))
        if self.restart_max is not None:
            check("restart_max", _whole(self.restart_max, 0, _MAX_RESTARTS))
        if self.restart_backoff_s is not None:
            check("restart_backoff_s", _seconds(self.restart_backoff_s, _MAX_BACKOFF_S))
        return [(name, reason) for name, _, reason in checks if reason]

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, path: str = "") -> ServerConfig:
        """Build a config from a JSON object, strictly: unknown keys are refused by name.

        ``path`` prefixes the field names in error messages (``"config"`` gives
        ``config.threads: ...``), for callers that validate a larger document.

        >>> ServerConfig.from_dict({"flash_attn": True, "tensor_split": "0.5,0.5"}).tensor_split
        (0.5, 0.5)
        """
        prefix = f"{path}." if path else ""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigValidationError([(path or "config", f"must be an object, got {data!r}")])
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigValidationError(
                [(f"{prefix}{k}", f"unknown field (known: {', '.join(sorted(known))})")
                 for k in unknown]
            )  # fmt: skip
        values = {str(k): v for k, v in data.items()}
        if values.get("restart", "no") is None:
            values["restart"] = "no"
        if values.get("extra_args", ()) is None:
            values["extra_args"] = ()
        try:
            return cls(**values)
        except ConfigValidationError as exc:
            if not prefix:
                raise
            raise ConfigValidationError([(f"{prefix}{p}", r) for p, r in exc.errors]) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly form: the fields that are set, plus ``restart``."""
        result: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if value is None or (field.name in ("extra_args", "env") and not value):
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            result[field.name] = value
        return result

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
    ) -> list[str]:
        """llama-server's arguments (without the program) for this binary's dialect.

        ``host`` and ``port`` are the resolved address (the supervisor fills the config's
        defaults); every other field is passed only when set. ``extra_args`` come last.
        Raises :class:`~llamaswitch._errors.UnsupportedOptionError` for a setting the
        binary cannot honour.

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
        for field, names in _VALUED_OPTIONS:
            value = getattr(self, field)
            if value is not None:
                argv += caps.option(field, value, *names)
        if self.n_gpu_layers is not None:
            argv += caps.gpu_layers_args(self.n_gpu_layers, legacy_all=_LEGACY_ALL_LAYERS)
        if self.flash_attn is not None:
            argv += caps.flash_attn_args(self.flash_attn)
        if self.split_mode is not None:
            argv += caps.option("split_mode", self.split_mode, "-sm", "--split-mode")
        if self.tensor_split is not None:
            text = ",".join(repr(float(v)) for v in self.tensor_split)
            argv += caps.option("tensor_split", text, "-ts", "--tensor-split")
        argv += caps.server_load_args(mlock=self.mlock, no_mmap=self.no_mmap)
        argv += self.extra_args
        # Every element a plain str: subprocess would take PathLike too, but records and
        # the status (JSON) must not carry anything else.
        return [str(a) for a in argv]


#: Typed fields passed as ``flag value`` through ``Capabilities.option``, in argv order.
_VALUED_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("threads", ("-t", "--threads")),
    ("threads_batch", ("-tb", "--threads-batch")),
    ("ctx_size", ("-c", "--ctx-size")),
    ("batch_size", ("-b", "--batch-size")),
    ("ubatch_size", ("-ub", "--ubatch-size")),
    ("main_gpu", ("-mg", "--main-gpu")),
    ("cache_type_k", ("-ctk", "--cache-type-k")),
    ("cache_type_v", ("-ctv", "--cache-type-v")),
    ("parallel", ("-np", "--parallel")),
    ("alias", ("-a", "--alias")),
)


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
