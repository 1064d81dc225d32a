"""Settings: what llamaswitch needs to know about this machine.

Precedence, highest first: explicit arguments, the process environment, the ``.env`` file
(path from ``CONFIG_PATH``, else ``./.env``), then the defaults. The seed's keys
(``LLAMA_SERVER_PATH``, ``LLAMA_BENCH_PATH``, ``MODELS_DIR``, ``SERVER_PORT``,
``GPU_LAYERS``) keep their names; everything llamaswitch adds is prefixed ``LLAMASWITCH_``.
Each setting is declared once, below, with its :class:`~llamaswitch._vocabulary.Spec`
(environment key, kind, doc): parsing, checking and ``docs/configuration.md``'s table
derive from it (a test keeps the page in step).
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from llamaswitch._errors import SettingsError
from llamaswitch._vocabulary import (
    MODEL_PORT,
    TCP_PORT,
    Choice,
    Custom,
    Number,
    PathKind,
    Spec,
    Switch,
    Text,
    Whole,
    spec,
    specs,
)

__all__ = ["SETTING_KEYS", "Settings", "is_loopback"]

_APP = "llamaswitch"


def _default_state_dir() -> Path:
    return platformdirs.user_state_path(_APP)


def _default_toolchain_dir() -> Path:
    return platformdirs.user_cache_path(_APP) / "toolchain"


# -- kinds only settings have ------------------------------------------------------------


def _port_range_problem(value: object) -> str | None:
    if not (isinstance(value, tuple) and len(value) == 2):
        return "a pair (low, high) of TCP ports"
    low, high = value
    if not (MODEL_PORT.accepts(low) and MODEL_PORT.accepts(high)) or low > high:
        return "a range LOW-HIGH of TCP ports with 1024 <= LOW <= HIGH <= 65535"
    return None


def _parse_port_range(raw: str) -> tuple[int, int]:
    low, sep, high = raw.strip().partition("-")
    if not sep:
        raise ValueError("a range LOW-HIGH such as 8090-8190")
    try:
        return int(low), int(high)
    except ValueError:
        raise ValueError("a range LOW-HIGH of whole numbers such as 8090-8190") from None


def _hosts_problem(value: object) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        return "a comma-separated list of HOST or HOST:PORT entries"
    if any(c.isspace() or c == "/" for v in value for c in v):
        return "a comma-separated list of HOST or HOST:PORT entries, without spaces or slashes"
    return None


def _listen_host_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "an IP address or host name such as 127.0.0.1"
    if any(c.isspace() for c in value) or "/" in value:
        return "an IP address or host name such as 127.0.0.1, without spaces or slashes"
    return None


def _gpu_layers_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        return "a whole number of layers >= 0 (or -1 for all), or empty for llama.cpp's default"
    return None


# Settings quote what is allowed as it is, not as "must be ...": a Custom check returns it.
# Their .env form is a string; their value (and so their JSON form) is a list.
_PORT_RANGE = Custom("a range LOW-HIGH of TCP ports", _port_range_problem, {"anyOf": [
    {"type": "string", "pattern": r"^\s*\d+\s*-\s*\d+\s*$"},
    {"type": "array", "items": TCP_PORT.schema(), "minItems": 2, "maxItems": 2}]},
    _parse_port_range)  # fmt: skip
_HOSTS = Custom(
    "a comma-separated list of HOST or HOST:PORT entries", _hosts_problem,
    {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    lambda raw: tuple(p.strip() for p in raw.split(",") if p.strip()),
)  # fmt: skip
_LISTEN_HOST = Custom("an IP address or host name such as 127.0.0.1", _listen_host_problem,
                      {"type": "string"})  # fmt: skip
_GPU_LAYERS = Custom("a whole number of layers >= 0, or -1 for all", _gpu_layers_problem,
                     {"type": "integer", "minimum": -1}, Whole().parse)  # fmt: skip
_SECONDS = Number(above=0)


def _to_path(value: str | os.PathLike[str]) -> Path:
    return Path(value)


def _to_optional_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None or value == "" else Path(value)


def _to_port_range(value: tuple[int, int] | list[int] | str) -> tuple[int, int]:
    if isinstance(value, str):
        return _parse_port_range(value)
    return tuple(value)  # type: ignore[return-value]


@attrs.frozen(kw_only=True)
class Settings:
    """llamaswitch's settings.

    ``Settings(...)`` takes exactly what you pass plus the defaults; it reads no
    environment, which keeps scripts and tests reproducible. :meth:`from_env` applies the
    full precedence: explicit arguments > environment > ``.env`` file > defaults.

    >>> s = Settings(models_dir="models", server_port=9000)
    >>> s.server_port
    9000
    """

    llama_server_path: Path | None = attrs.field(
        default=None,
        converter=_to_optional_path,
        metadata=spec(
            "Path to `llama-server` (`.exe` on Windows). Empty: the toolchain cache, then `PATH`.",
            PathKind(),
            env="LLAMA_SERVER_PATH",
            default_doc="(discovered)",
        ),
    )
    llama_bench_path: Path | None = attrs.field(
        default=None,
        converter=_to_optional_path,
        metadata=spec(
            "Path to `llama-bench`. Empty: the toolchain cache, then `PATH`.",
            PathKind(),
            env="LLAMA_BENCH_PATH",
            default_doc="(discovered)",
        ),
    )
    models_dir: Path = attrs.field(
        default=Path("models"),
        converter=_to_path,
        metadata=spec(
            "Folder holding the GGUF models (subfolders included).", PathKind(), env="MODELS_DIR"
        ),
    )
    server_port: int = attrs.field(
        default=8080,
        metadata=spec(
            "Port of the llamaswitch REST API. Never handed to a model server.",
            TCP_PORT,
            env="SERVER_PORT",
        ),
    )
    gpu_layers: int | None = attrs.field(
        default=None,
        metadata=spec(
            "Default `n_gpu_layers` for new model servers and benchmarks. Empty: llama.cpp's "
            "own default.",
            _GPU_LAYERS,
            env="GPU_LAYERS",
            default_doc="(llama.cpp's)",
        ),
    )
    server_host: str = attrs.field(
        default="127.0.0.1",
        metadata=spec(
            "Address the REST API binds. A non-loopback address needs an API key (or "
            "`serve --insecure`).",
            _LISTEN_HOST,
            env="LLAMASWITCH_HOST",
        ),
    )
    state_dir: Path = attrs.field(
        factory=_default_state_dir,
        converter=_to_path,
        metadata=spec(
            "Folder for server logs, the benchmark database and the record of child processes.",
            PathKind(),
            env="LLAMASWITCH_STATE_DIR",
            default_doc="the user state folder (`~/.local/state/llamaswitch` on Linux)",
        ),
    )
    toolchain_dir: Path = attrs.field(
        factory=_default_toolchain_dir,
        converter=_to_path,
        metadata=spec(
            "Cache of llama.cpp builds made by `llamaswitch toolchain build`.",
            PathKind(),
            env="LLAMASWITCH_TOOLCHAIN_DIR",
            default_doc="the user cache folder + `/toolchain` (`~/.cache/llamaswitch/toolchain`)",
        ),
    )
    model_ports: tuple[int, int] = attrs.field(
        default=(8090, 8190),
        converter=_to_port_range,
        metadata=spec(
            "Range `LOW-HIGH` of ports for model servers started without a port. Must not "
            "contain `SERVER_PORT`.",
            _PORT_RANGE,
            env="LLAMASWITCH_MODEL_PORTS",
            default_doc="`8090-8190`",
        ),
    )
    default_model_port: int | None = attrs.field(
        default=None,
        metadata=spec(
            "Port `switch` uses when the config names none. Empty: the first port of "
            "`LLAMASWITCH_MODEL_PORTS`.",
            MODEL_PORT,
            env="LLAMASWITCH_DEFAULT_MODEL_PORT",
            default_doc="(first model port)",
        ),
    )
    ready_timeout_s: float = attrs.field(
        default=600.0,
        metadata=spec(
            "Seconds a model server may take to answer `/health` 200 before it is killed. "
            "Big models on slow disks take minutes.",
            _SECONDS,
            env="LLAMASWITCH_READY_TIMEOUT_S",
            default_doc="`600`",
        ),
    )
    stop_timeout_s: float = attrs.field(
        default=10.0,
        metadata=spec(
            "Grace period in seconds between the polite stop (SIGTERM) and the kill.",
            _SECONDS,
            env="LLAMASWITCH_STOP_TIMEOUT_S",
            default_doc="`10`",
        ),
    )
    api_key: str | None = attrs.field(
        default=None,
        repr=False,
        metadata=spec(
            "When set, every REST route except health needs `Authorization: Bearer <key>`.",
            Text(what="a key without NUL characters"),
            env="LLAMASWITCH_API_KEY",
            default_doc="(none)",
        ),
    )
    allow_outside_models_dir: bool = attrs.field(
        default=False,
        metadata=spec(
            "Allow model paths that resolve outside `MODELS_DIR` (off: `../` and foreign "
            "absolute paths are refused).",
            Switch("true/false"),
            env="LLAMASWITCH_ALLOW_OUTSIDE_MODELS_DIR",
        ),
    )
    bench_concurrency: int = attrs.field(
        default=1,
        metadata=spec(
            "How many benchmarks run at once. Concurrent benchmarks skew each other's figures.",
            Whole(1),
            env="LLAMASWITCH_BENCH_CONCURRENCY",
        ),
    )
    bench_timeout_s: float = attrs.field(
        default=3600.0,
        metadata=spec(
            "Default time limit of one benchmark task.",
            _SECONDS,
            env="LLAMASWITCH_BENCH_TIMEOUT_S",
            default_doc="`3600`",
        ),
    )
    insecure: bool = attrs.field(
        default=False,
        metadata=spec(
            "Allow the REST API and model servers on non-loopback addresses without an API key "
            "(`serve --insecure`). Model servers beyond loopback get a key of their own either "
            "way.",
            Switch("true/false"),
            env="LLAMASWITCH_INSECURE",
        ),
    )
    rpc_hosts: tuple[str, ...] = attrs.field(
        default=(),
        converter=tuple,
        metadata=spec(
            "Hosts (`HOST` or `HOST:PORT`, comma-separated) that llama.cpp's RPC backend "
            "(`--rpc`, `LLAMA_ARG_RPC`) may send a model's weights to. Empty: RPC refused.",
            _HOSTS,
            env="LLAMASWITCH_RPC_HOSTS",
            default_doc="(none)",
        ),
    )
    liveness_interval_s: float = attrs.field(
        default=5.0,
        metadata=spec(
            "Seconds between `/health` checks of a ready model server.",
            _SECONDS,
            env="LLAMASWITCH_LIVENESS_INTERVAL_S",
            default_doc="`5`",
        ),
    )
    liveness_failures: int = attrs.field(default=3, metadata=spec(
        "Failed checks in a row after which a ready server is `unresponsive` (and "
        "restarted, with `restart=on-failure`).", Whole(1),
        env="LLAMASWITCH_LIVENESS_FAILURES"))  # fmt: skip
    # -- the gateway (docs/gateway.md) ----------------------------------------------------
    max_models: int | None = attrs.field(default=None, metadata=spec(
        "Models the gateway keeps loaded at once; 1 gives the seed's one model at a time.",
        Whole(1), env="LLAMASWITCH_MAX_MODELS", default_doc="no count limit"))  # fmt: skip
    vram_budget_mib: float | None = attrs.field(default=None, metadata=spec(
        "GPU memory the gateway's models may use, per GPU (MiB).", Number(above=0, unit="MiB"),
        env="LLAMASWITCH_VRAM_BUDGET_MIB",
        default_doc="each GPU's total less 1024 MiB (llama.cpp's own fit margin)"))  # fmt: skip
    ram_budget_mib: float | None = attrs.field(default=None, metadata=spec(
        "RAM the gateway's models may use (MiB).", Number(above=0, unit="MiB"),
        env="LLAMASWITCH_RAM_BUDGET_MIB",
        default_doc="the total less 10 % (at least 2048 MiB) for everything else"))  # fmt: skip
    idle_ttl_s: float | None = attrs.field(default=None, metadata=spec(
        "Unload a model the gateway loaded after this long without requests (a preset's "
        "`ttl_s` wins).", _SECONDS, env="LLAMASWITCH_IDLE_TTL_S",
        default_doc="none: models stay until room is needed"))  # fmt: skip
    queue_max: int = attrs.field(default=256, metadata=spec(
        "Requests that may wait for one model (for its load or a free slot); beyond it "
        "the gateway answers 429.", Whole(0), env="LLAMASWITCH_QUEUE_MAX",
        default_doc="`256`"))  # fmt: skip
    drain_timeout_s: float = attrs.field(default=60.0, metadata=spec(
        "How long making room for a model (and an admin switch or stop) waits for the "
        "requests in flight on a model to finish.", _SECONDS,
        env="LLAMASWITCH_DRAIN_TIMEOUT_S", default_doc="`60`"))  # fmt: skip
    presets: Path | None = attrs.field(default=None, converter=_to_optional_path, metadata=spec(
        "The presets file (TOML): model ids, aliases and settings.", PathKind(),
        env="LLAMASWITCH_PRESETS",
        default_doc="`llamaswitch.toml` in the models folder, if it exists"))  # fmt: skip
    server_keys: str = attrs.field(default="beyond-loopback", metadata=spec(
        "Which model servers get a random API key of their own (`LLAMA_API_KEY`): those "
        "listening beyond loopback, or `always` (every one; a cluster host's always do).",
        Choice(("beyond-loopback", "always")), env="LLAMASWITCH_SERVER_KEYS",
        default_doc="`beyond-loopback`"))  # fmt: skip
    event_loop: str = attrs.field(default="auto", metadata=spec(
        "The service's event loop: `auto` (uvloop where it is installed, as it is with the "
        "`http` extra on Linux and macOS; asyncio's elsewhere) or `asyncio` (always "
        "asyncio's own).",
        Choice(("auto", "asyncio")), env="LLAMASWITCH_EVENT_LOOP",
        default_doc="`auto`"))  # fmt: skip
    # -- many hosts (docs/cluster.md) -----------------------------------------------------
    cluster: str | None = attrs.field(default=None, metadata=spec(
        "Serve as the head of a Ray cluster: `ray` (the cluster this machine belongs to, or "
        "`RAY_ADDRESS`) or `ray://HOST:PORT` (Ray Client). Needs the `ray` extra.",
        Text(what="ray or ray://HOST:PORT", pattern=r"ray|ray://[^\s/]+:\d+"),
        env="LLAMASWITCH_CLUSTER", default_doc="(none: this machine alone)"))  # fmt: skip
    host_name: str | None = attrs.field(default=None, metadata=spec(
        "This host's name in a cluster (`GET /api/v1/hosts`, the routes' `host`).",
        Text(what="a name of letters, digits, '.', '_' and '-'",
             pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"),
        env="LLAMASWITCH_HOST_NAME", default_doc="the machine's host name"))  # fmt: skip
    cluster_grace_s: float = attrs.field(default=30.0, metadata=spec(
        "How long a cluster host keeps its model servers after it lost the head (a head "
        "restarted within it takes them over); then it stops them.", _SECONDS,
        env="LLAMASWITCH_CLUSTER_GRACE_S", default_doc="`30`"))  # fmt: skip
    #: Where each value came from (field name -> "argument", "environment", a .env path
    #: or "default"); used to name the source in error messages.
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for name, setting in _SPECS.items():
            value = getattr(self, name)
            if value is not None and setting.kind.problem(value) is not None:
                raise SettingsError(
                    _env(setting), value, self._source(name), _allowed(setting, value)
                )
        low, high = self.model_ports
        if low <= self.server_port <= high:
            raise SettingsError(
                "LLAMASWITCH_MODEL_PORTS",
                f"{low}-{high}",
                self._source("model_ports"),
                f"a port range that does not contain SERVER_PORT={self.server_port} "
                f"(from {self._source('server_port')})",
            )
        if self.default_model_port == self.server_port:
            raise SettingsError(
                "LLAMASWITCH_DEFAULT_MODEL_PORT",
                self.default_model_port,
                self._source("default_model_port"),
                f"a port other than SERVER_PORT={self.server_port}, the REST API's own",
            )

    def _source(self, field: str) -> str:
        return self.sources.get(field, "argument")

    @property
    def model_port(self) -> int:
        """The port ``switch`` uses when its config names none."""
        return (
            self.default_model_port if self.default_model_port is not None else self.model_ports[0]
        )

    @property
    def presets_path(self) -> Path:
        """The presets file: ``LLAMASWITCH_PRESETS``, else ``llamaswitch.toml`` in the
        models folder (which need not exist)."""
        return self.presets if self.presets is not None else self.models_dir / "llamaswitch.toml"

    @property
    def measurements_path(self) -> Path:
        """SQLite database of the memory the gateway measured per model and config."""
        return self.state_dir / "measurements.sqlite3"

    @property
    def logs_dir(self) -> Path:
        """Folder of the per-server log files."""
        return self.state_dir / "logs"

    @property
    def binary_cache_file(self) -> Path:
        """Cached identity (``--version``, ``--help``) of the binaries seen."""
        return self.state_dir / "binaries.json"

    @property
    def database_path(self) -> Path:
        """SQLite database of benchmark tasks."""
        return self.state_dir / "bench.sqlite3"

    @classmethod
    def from_env(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        **explicit: Any,
    ) -> Settings:
        """Build settings from explicit arguments, the environment and a ``.env`` file.

        ``environ`` defaults to ``os.environ``. ``env_file`` defaults to ``CONFIG_PATH``
        from ``environ``, else ``./.env``; a missing default file is fine, a missing file
        named explicitly (argument or ``CONFIG_PATH``) is an error.

        >>> Settings.from_env(environ={"SERVER_PORT": "9000"}, env_file=os.devnull).server_port
        9000
        """
        env = os.environ if environ is None else environ
        unknown = set(explicit) - set(_SPECS)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")

        file_values: dict[str, str | None] = {}
        file_label = ""
        path, named = _env_file_path(env_file, env)
        if path is not None:
            if path.exists() and not path.is_dir():
                file_values = _read_env_file(path)
                file_label = str(path)
            elif named:
                raise SettingsError(
                    "CONFIG_PATH",
                    str(path),
                    "environment" if env_file is None else "argument",
                    "the path of an existing .env file",
                )

        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, setting in _SPECS.items():
            key = _env(setting)
            if name in explicit:
                values[name] = explicit[name]
                sources[name] = "argument"
                continue
            if key in env:
                raw, source = env[key], "environment"
            elif file_values.get(key) is not None:
                raw, source = file_values[key], file_label  # type: ignore[assignment]
            else:
                continue
            try:
                value = _parse(name, setting, raw)
            except ValueError as exc:
                raise SettingsError(key, raw, source, str(exc)) from None
            if value is not None and setting.kind.problem(value) is not None:
                # Checked here too so the message quotes the text as the user wrote it.
                raise SettingsError(key, raw, source, _allowed(setting, value))
            values[name] = value
            sources[name] = source
        return cls(**values, sources=sources)

    def describe(self) -> list[tuple[str, str, str]]:
        """``(env key, value, source)`` for every setting, the API key masked; the source
        is ``argument``, ``environment``, the ``.env`` file's path or ``default``."""
        rows = []
        for name, setting in _SPECS.items():
            value = getattr(self, name)
            if name == "api_key" and value:
                shown = "***"
            elif name == "model_ports":
                shown = f"{value[0]}-{value[1]}"
            elif isinstance(value, tuple):
                shown = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                shown = "true" if value else "false"
            else:
                shown = "" if value is None else str(value)
            rows.append((_env(setting), shown, self.sources.get(name, "default")))
        return rows


_SPECS: Mapping[str, Spec] = specs(Settings)
#: Every setting by its environment key.
SETTING_KEYS: Mapping[str, Spec] = {_env_key: s for s in _SPECS.values() if (_env_key := s.env)}
#: Fields whose default is None: an empty value in the environment means "unset".
_OPTIONAL = frozenset(f.name for f in attrs.fields(Settings) if f.default is None)


def _env(setting: Spec) -> str:
    assert setting.env is not None  # noqa: S101 - every setting declares its key
    return setting.env


def _allowed(setting: Spec, value: object) -> str:
    # A Custom check already says what is allowed; other kinds say it in `allowed`.
    reason = setting.kind.problem(value)
    return reason if isinstance(setting.kind, Custom) and reason else setting.kind.allowed


def _parse(name: str, setting: Spec, raw: str) -> object:
    if name in _OPTIONAL and not raw.strip():
        return None
    return setting.kind.parse(raw)


def _env_file_path(
    env_file: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> tuple[Path | None, bool]:
    """The .env file to read, and whether it was named explicitly."""
    if env_file is not None:
        return Path(env_file), True
    if env.get("CONFIG_PATH"):
        return Path(env["CONFIG_PATH"]), True
    return Path(".env"), False


def _read_env_file(path: Path) -> dict[str, str | None]:
    # python-dotenv handles quoting, `export`, and comments after values (the seed's
    # `GPU_LAYERS=20  # GPU加速层数`). Read as UTF-8: the seed's file carries Chinese comments.
    from dotenv import dotenv_values

    return dict(dotenv_values(path, encoding="utf-8"))


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (used to refuse open binds without a key).

    Cached (a pure function of the text): the service asks it of every request's Host."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
