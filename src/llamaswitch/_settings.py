"""Settings: what llamaswitch needs to know about this machine.

Precedence, highest first: explicit arguments, the process environment, the ``.env`` file
(path from ``CONFIG_PATH``, else ``./.env``), then the defaults below. The seed's keys
(``LLAMA_SERVER_PATH``, ``LLAMA_BENCH_PATH``, ``MODELS_DIR``, ``SERVER_PORT``,
``GPU_LAYERS``) keep their names; everything llamaswitch adds is prefixed ``LLAMASWITCH_``.
``docs/configuration.md`` documents every key; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from llamaswitch._errors import SettingsError

__all__ = ["SETTING_KEYS", "SettingSpec", "Settings"]

_APP = "llamaswitch"


def _default_state_dir() -> Path:
    return platformdirs.user_state_path(_APP)


def _default_toolchain_dir() -> Path:
    return platformdirs.user_cache_path(_APP) / "toolchain"


# -- parsers: text from the environment or a .env file -> typed value ---------------------
# Each raises ValueError with the "what is allowed" text; the caller adds key and source.


def _parse_path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a non-empty path")
    return Path(raw.strip())


def _parse_optional_path(raw: str) -> Path | None:
    return None if not raw.strip() else Path(raw.strip())


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("a whole number") from None


def _parse_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("a number of seconds") from None
    return value


def _parse_optional_int(raw: str) -> int | None:
    return None if not raw.strip() else _parse_int(raw)


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("one of 1/0, true/false, yes/no, on/off")


def _parse_port_range(raw: str) -> tuple[int, int]:
    low, sep, high = raw.strip().partition("-")
    if not sep:
        raise ValueError("a range LOW-HIGH such as 8090-8190")
    try:
        return int(low), int(high)
    except ValueError:
        raise ValueError("a range LOW-HIGH of whole numbers such as 8090-8190") from None


def _parse_hosts(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_optional_str(raw: str) -> str | None:
    return raw.strip() or None


# -- checks: typed value -> None if allowed, else the "what is allowed" text --------------


def _check_port(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return "a TCP port from 1 to 65535"
    return None


def _check_host(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "an IP address or host name such as 127.0.0.1"
    if any(c.isspace() for c in value) or "/" in value:
        return "an IP address or host name such as 127.0.0.1, without spaces or slashes"
    return None


def _check_gpu_layers(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        return "a whole number of layers >= 0 (or -1 for all), or empty for llama.cpp's default"
    return None


def _check_positive_seconds(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        return "a number of seconds greater than 0"
    return None


def _check_positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "a whole number >= 1"
    return None


def _check_port_range(value: Any) -> str | None:
    if not (isinstance(value, tuple) and len(value) == 2):
        return "a pair (low, high) of TCP ports"
    low, high = value
    if _check_model_port(low) or _check_model_port(high) or low > high:
        return "a range LOW-HIGH of TCP ports with 1024 <= LOW <= HIGH <= 65535"
    return None


def _check_hosts(value: Any) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        return "a comma-separated list of HOST or HOST:PORT entries"
    if any(c.isspace() or c == "/" for v in value for c in v):
        return "a comma-separated list of HOST or HOST:PORT entries, without spaces or slashes"
    return None


def _check_model_port(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 65535:
        return "a TCP port from 1024 to 65535 (model servers never take a system port)"
    return None


def _check_path(value: Any) -> str | None:
    return None if isinstance(value, Path) else "a path"


def _check_optional_path(value: Any) -> str | None:
    return None if value is None or isinstance(value, Path) else "a path or nothing"


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _check_optional_str(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "a string or nothing"


@attrs.frozen
class SettingSpec:
    """How one setting is named, read from text, checked and documented."""

    field: str
    env: str
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None]
    doc: str
    default_doc: str


_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("llama_server_path", "LLAMA_SERVER_PATH", _parse_optional_path,
                _check_optional_path, "Path to `llama-server` (`.exe` on Windows). Empty: "
                "the toolchain cache, then `PATH`.", "(discovered)"),
    SettingSpec("llama_bench_path", "LLAMA_BENCH_PATH", _parse_optional_path,
                _check_optional_path, "Path to `llama-bench`. Empty: the toolchain cache, "
                "then `PATH`.", "(discovered)"),
    SettingSpec("models_dir", "MODELS_DIR", _parse_path, _check_path,
                "Folder holding the GGUF models (subfolders included).", "`models`"),
    SettingSpec("server_port", "SERVER_PORT", _parse_int, _check_port,
                "Port of the llamaswitch REST API. Never handed to a model server.", "`8080`"),
    SettingSpec("gpu_layers", "GPU_LAYERS", _parse_optional_int, _check_gpu_layers,
                "Default `n_gpu_layers` for new model servers and benchmarks. Empty: "
                "llama.cpp's own default.", "(llama.cpp's)"),
    SettingSpec("server_host", "LLAMASWITCH_HOST", _parse_str, _check_host,
                "Address the REST API binds. A non-loopback address needs an API key "
                "(or `serve --insecure`).", "`127.0.0.1`"),
    SettingSpec("state_dir", "LLAMASWITCH_STATE_DIR", _parse_path, _check_path,
                "Folder for server logs, the benchmark database and the record of "
                "child processes.", "the user state folder (`~/.local/state/llamaswitch` "
                "on Linux)"),
    SettingSpec("toolchain_dir", "LLAMASWITCH_TOOLCHAIN_DIR", _parse_path, _check_path,
                "Cache of llama.cpp builds made by `llamaswitch toolchain build`.",
                "the user cache folder + `/toolchain` (`~/.cache/llamaswitch/toolchain`)"),
    SettingSpec("model_ports", "LLAMASWITCH_MODEL_PORTS", _parse_port_range, _check_port_range,
                "Range `LOW-HIGH` of ports for model servers started without a port. Must "
                "not contain `SERVER_PORT`.", "`8090-8190`"),
    SettingSpec("default_model_port", "LLAMASWITCH_DEFAULT_MODEL_PORT", _parse_optional_int,
                _check_model_port,
                "Port `switch` uses when the config names none. Empty: the first port of "
                "`LLAMASWITCH_MODEL_PORTS`.", "(first model port)"),
    SettingSpec("ready_timeout_s", "LLAMASWITCH_READY_TIMEOUT_S", _parse_float,
                _check_positive_seconds, "Seconds a model server may take to answer "
                "`/health` 200 before it is killed. Big models on slow disks take minutes.",
                "`600`"),
    SettingSpec("stop_timeout_s", "LLAMASWITCH_STOP_TIMEOUT_S", _parse_float,
                _check_positive_seconds, "Grace period in seconds between the polite stop "
                "(SIGTERM) and the kill.", "`10`"),
    SettingSpec("api_key", "LLAMASWITCH_API_KEY", _parse_optional_str, _check_optional_str,
                "When set, every REST route except health needs `Authorization: Bearer "
                "<key>`.", "(none)"),
    SettingSpec("allow_outside_models_dir", "LLAMASWITCH_ALLOW_OUTSIDE_MODELS_DIR",
                _parse_bool, _check_bool, "Allow model paths that resolve outside "
                "`MODELS_DIR` (off: `../` and foreign absolute paths are refused).", "`false`"),
    SettingSpec("bench_concurrency", "LLAMASWITCH_BENCH_CONCURRENCY", _parse_int,
                _check_positive_int, "How many benchmarks run at once. Concurrent "
                "benchmarks skew each other's figures.", "`1`"),
    SettingSpec("bench_timeout_s", "LLAMASWITCH_BENCH_TIMEOUT_S", _parse_float,
                _check_positive_seconds, "Default time limit of one benchmark task.",
                "`3600`"),
    SettingSpec("insecure", "LLAMASWITCH_INSECURE", _parse_bool, _check_bool,
                "Allow the REST API and model servers on non-loopback addresses without an "
                "API key (`serve --insecure`). Model servers beyond loopback get a key of "
                "their own either way.", "`false`"),
    SettingSpec("rpc_hosts", "LLAMASWITCH_RPC_HOSTS", _parse_hosts, _check_hosts,
                "Hosts (`HOST` or `HOST:PORT`, comma-separated) that llama.cpp's RPC backend "
                "(`--rpc`, `LLAMA_ARG_RPC`) may send a model's weights to. Empty: RPC refused.",
                "(none)"),
    SettingSpec("liveness_interval_s", "LLAMASWITCH_LIVENESS_INTERVAL_S", _parse_float,
                _check_positive_seconds, "Seconds between `/health` checks of a ready model "
                "server.", "`5`"),
    SettingSpec("liveness_failures", "LLAMASWITCH_LIVENESS_FAILURES", _parse_int,
                _check_positive_int, "Failed checks in a row after which a ready server is "
                "`unresponsive` (and restarted, with `restart=on-failure`).", "`3`"),
)  # fmt: skip

SETTING_KEYS: Mapping[str, SettingSpec] = {spec.env: spec for spec in _SPECS}
_BY_FIELD: Mapping[str, SettingSpec] = {spec.field: spec for spec in _SPECS}


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

    llama_server_path: Path | None = attrs.field(default=None, converter=_to_optional_path)
    llama_bench_path: Path | None = attrs.field(default=None, converter=_to_optional_path)
    models_dir: Path = attrs.field(default=Path("models"), converter=_to_path)
    server_port: int = 8080
    gpu_layers: int | None = None
    server_host: str = "127.0.0.1"
    state_dir: Path = attrs.field(factory=_default_state_dir, converter=_to_path)
    toolchain_dir: Path = attrs.field(factory=_default_toolchain_dir, converter=_to_path)
    model_ports: tuple[int, int] = attrs.field(default=(8090, 8190), converter=_to_port_range)
    default_model_port: int | None = None
    ready_timeout_s: float = 600.0
    stop_timeout_s: float = 10.0
    api_key: str | None = attrs.field(default=None, repr=False)
    allow_outside_models_dir: bool = False
    bench_concurrency: int = 1
    bench_timeout_s: float = 3600.0
    insecure: bool = False
    rpc_hosts: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    liveness_interval_s: float = 5.0
    liveness_failures: int = 3
    #: Where each value came from (field name -> "argument", "environment", a .env path
    #: or "default"); used to name the source in error messages.
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for spec in _SPECS:
            value = getattr(self, spec.field)
            allowed = spec.check(value)
            if allowed is not None:
                raise SettingsError(spec.env, value, self._source(spec.field), allowed)
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
        unknown = set(explicit) - set(_BY_FIELD)
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
        for spec in _SPECS:
            if spec.field in explicit:
                values[spec.field] = explicit[spec.field]
                sources[spec.field] = "argument"
                continue
            if spec.env in env:
                raw, source = env[spec.env], "environment"
            elif file_values.get(spec.env) is not None:
                raw, source = file_values[spec.env], file_label  # type: ignore[assignment]
            else:
                continue
            try:
                value = spec.parse(raw)
            except ValueError as exc:
                raise SettingsError(spec.env, raw, source, str(exc)) from None
            allowed = spec.check(value)
            if allowed is not None:
                # Checked here too so the message quotes the text as the user wrote it.
                raise SettingsError(spec.env, raw, source, allowed)
            values[spec.field] = value
            sources[spec.field] = source
        return cls(**values, sources=sources)

    def describe(self) -> list[tuple[str, str, str]]:
        """``(env key, value, source)`` for every setting, the API key masked."""
        rows = []
        for spec in _SPECS:
            value = getattr(self, spec.field)
            if spec.field == "api_key" and value:
                shown = "***"
            elif spec.field == "model_ports":
                shown = f"{value[0]}-{value[1]}"
            elif spec.field == "rpc_hosts":
                shown = ",".join(value)
            else:
                shown = "" if value is None else str(value)
            rows.append((spec.env, shown, self.sources.get(spec.field, "default")))
        return rows


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (used to refuse open binds without a key)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
