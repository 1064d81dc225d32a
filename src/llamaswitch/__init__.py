"""llamaswitch: run, switch and benchmark llama.cpp models on your own hardware.

>>> from llamaswitch import LlamaSwitch, Settings, ServerConfig
>>> with LlamaSwitch(Settings(models_dir="models")) as ls:            # doctest: +SKIP
...     ls.switch("tiny.gguf", ServerConfig(port=8091, ctx_size=256))

Public names are imported lazily, so ``import llamaswitch`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamaswitch._api import AsyncLlamaSwitch
    from llamaswitch._binaries import BinaryInfo
    from llamaswitch._capabilities import Capabilities
    from llamaswitch._catalog import ModelCatalog, ModelInfo
    from llamaswitch._errors import (
        BenchError,
        BenchParseError,
        BinaryIdentityError,
        BinaryNotFoundError,
        ConfigValidationError,
        LlamaSwitchError,
        ModelError,
        ModelNotFoundError,
        ModelPathError,
        ModelUnusableError,
        PortInUseError,
        PrerequisiteMissingError,
        ReadinessTimeoutError,
        ReservedPortError,
        ServerError,
        ServerNotFoundError,
        ServerStartError,
        ServiceClosedError,
        SettingsError,
        SupersededError,
        TaskNotFoundError,
        TaskStateError,
        TaskTimeoutError,
        ToolchainError,
        UnsupportedOptionError,
    )
    from llamaswitch._events import Event
    from llamaswitch._settings import Settings
    from llamaswitch._sync import LlamaSwitch
    from llamaswitch.bench.config import BenchConfig
    from llamaswitch.bench.parser import BenchResult, parse_bench_output
    from llamaswitch.bench.runner import BenchTask, Comparison
    from llamaswitch.servers.config import ServerConfig
    from llamaswitch.servers.supervisor import ServerState, ServerStatus

__all__ = [
    "AsyncLlamaSwitch",
    "BenchConfig",
    "BenchError",
    "BenchParseError",
    "BenchResult",
    "BenchTask",
    "BinaryIdentityError",
    "BinaryInfo",
    "BinaryNotFoundError",
    "Capabilities",
    "Comparison",
    "ConfigValidationError",
    "Event",
    "LlamaSwitch",
    "LlamaSwitchError",
    "ModelCatalog",
    "ModelError",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelPathError",
    "ModelUnusableError",
    "PortInUseError",
    "PrerequisiteMissingError",
    "ReadinessTimeoutError",
    "ReservedPortError",
    "ServerConfig",
    "ServerError",
    "ServerNotFoundError",
    "ServerStartError",
    "ServerState",
    "ServerStatus",
    "ServiceClosedError",
    "Settings",
    "SettingsError",
    "SupersededError",
    "TaskNotFoundError",
    "TaskStateError",
    "TaskTimeoutError",
    "ToolchainError",
    "UnsupportedOptionError",
    "parse_bench_output",
]

_HOMES = {
    "AsyncLlamaSwitch": "_api",
    "BenchConfig": "bench.config",
    "BenchResult": "bench.parser",
    "parse_bench_output": "bench.parser",
    "BenchTask": "bench.runner",
    "Comparison": "bench.runner",
    "BinaryInfo": "_binaries",
    "Capabilities": "_capabilities",
    "ModelCatalog": "_catalog",
    "ModelInfo": "_catalog",
    "Event": "_events",
    "ServerConfig": "servers.config",
    "Settings": "_settings",
    "ServerState": "servers.supervisor",
    "ServerStatus": "servers.supervisor",
    "LlamaSwitch": "_sync",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("llamaswitch")
        except PackageNotFoundError:  # running from a source tree that is not installed
            from llamaswitch._version import __version__

            return __version__
    if name in _HOMES:
        module = importlib.import_module(f"llamaswitch.{_HOMES[name]}")
        return getattr(module, name)
    if name in __all__:
        from llamaswitch import _errors

        return getattr(_errors, name)
    raise AttributeError(f"module 'llamaswitch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
