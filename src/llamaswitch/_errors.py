"""The exceptions llamaswitch raises.

Every error the library raises on purpose derives from :class:`LlamaSwitchError`;
lower-layer errors (``OSError``, ``psutil.Error``, NVML errors, ``sqlite3.Error``) are
translated at one boundary and chained with ``raise ... from``::

    LlamaSwitchError
    ├── ServiceClosedError            the object (or the service) is closed or closing
    ├── SettingsError                 a setting has a bad value (names key, value, source)
    ├── ConfigValidationError         a ServerConfig / BenchConfig field is invalid
    ├── BinaryNotFoundError           llama-server / llama-bench could not be found
    ├── BinaryIdentityError           a binary did not answer --version / --help usefully
    ├── UnsupportedOptionError        the binary cannot honour a setting (names its version)
    ├── ToolchainError                building llama.cpp from source failed
    │   └── PrerequisiteMissingError  cmake, a C++ compiler or pip is not installed
    ├── ModelError
    │   ├── ModelNotFoundError        unknown model (suggests the closest names)
    │   ├── ModelPathError            a path resolves outside the models folder
    │   └── ModelUnusableError        the file is no model llama.cpp could load (says why)
    ├── ServerError
    │   ├── PortInUseError            another process holds the port
    │   ├── ReservedPortError         the port is the REST API's own
    │   ├── ServerStartError          the process exited before it became ready
    │   ├── ReadinessTimeoutError     it never became ready in time (and was killed)
    │   ├── SupersededError           a later request on the same port overtook this one
    │   └── ServerNotFoundError       no server matches the name or port
    └── BenchError
        ├── BenchParseError           llama-bench output could not be parsed
        ├── TaskNotFoundError         unknown benchmark task id
        ├── TaskStateError            the task's state forbids it (cancel a finished task...)
        └── TaskTimeoutError          waiting for a task outlasted its timeout
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BenchError",
    "BenchParseError",
    "BinaryIdentityError",
    "BinaryNotFoundError",
    "ConfigValidationError",
    "LlamaSwitchError",
    "ModelError",
    "ModelNotFoundError",
    "ModelPathError",
    "ModelUnusableError",
    "PortInUseError",
    "PrerequisiteMissingError",
    "ReadinessTimeoutError",
    "ReservedPortError",
    "ServerError",
    "ServerNotFoundError",
    "ServerStartError",
    "ServiceClosedError",
    "SettingsError",
    "SupersededError",
    "TaskNotFoundError",
    "TaskStateError",
    "TaskTimeoutError",
    "ToolchainError",
    "UnsupportedOptionError",
]


class LlamaSwitchError(Exception):
    """Base class of every error llamaswitch raises on purpose."""


class ServiceClosedError(LlamaSwitchError):
    """The object was closed (or is closing): it takes no more requests.

    Raised by a closed :class:`~llamaswitch.AsyncLlamaSwitch`, its catalog, supervisor or
    benchmark runner, and by a service that is shutting down.
    """


class SettingsError(LlamaSwitchError, ValueError):
    """A setting has a bad value.

    The message names the key, the value, where it came from and what is allowed.
    """

    def __init__(self, key: str, value: object, source: str, allowed: str) -> None:
        self.key = key
        self.value = value
        self.source = source
        self.allowed = allowed
        super().__init__(f"{key}={value!r} (from {source}) is invalid: {allowed}")


class ConfigValidationError(LlamaSwitchError, ValueError):
    """One or more fields of a ServerConfig or BenchConfig are invalid.

    ``errors`` holds ``(field path, reason)`` pairs, one per bad field.
    """

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in self.errors))


class BinaryNotFoundError(LlamaSwitchError, FileNotFoundError):
    """llama-server or llama-bench could not be found or is not executable."""


class BinaryIdentityError(LlamaSwitchError):
    """A binary did not answer ``--version`` or ``--help`` the way llama.cpp does."""


class UnsupportedOptionError(LlamaSwitchError, ValueError):
    """The llama.cpp binary in use cannot honour a setting.

    The message names the setting, the value and the binary's version.
    """

    def __init__(self, field: str, value: object, binary: str, version: str, why: str) -> None:
        self.field = field
        self.value = value
        self.binary = binary
        self.version = version
        super().__init__(f"{field}={value!r} is not supported by {binary} {version}: {why}")


class ToolchainError(LlamaSwitchError):
    """Building llama.cpp from its source distribution failed."""


class PrerequisiteMissingError(ToolchainError):
    """A tool the build needs (cmake, a C++ compiler, pip) is not installed.

    ``missing`` names each missing tool; the message says how to install it.
    """

    def __init__(self, missing: Sequence[str], message: str) -> None:
        self.missing = list(missing)
        super().__init__(message)


class ModelError(LlamaSwitchError):
    """Base class of model reference errors."""


class ModelNotFoundError(ModelError, LookupError):
    """No model matches the reference; ``suggestions`` lists the closest names."""

    def __init__(self, reference: str, suggestions: Sequence[str] = ()) -> None:
        self.reference = reference
        self.suggestions = list(suggestions)
        hint = (
            f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if suggestions else ""
        )
        super().__init__(f"model {reference!r} not found in the models folder{hint}")


class ModelPathError(ModelError, ValueError):
    """A model path resolves outside the models folder."""


class ModelUnusableError(ModelError, ValueError):
    """The model file is not one llama.cpp could load: corrupt, truncated, a shard missing.

    Raised before anything is stopped or started; ``reason`` is what the catalog found.
    """

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"model {model} cannot be used: {reason}")


class ServerError(LlamaSwitchError):
    """Base class of model server errors."""


class PortInUseError(ServerError):
    """Another process already listens on the port."""

    def __init__(self, port: int, host: str, holder: str | None = None) -> None:
        self.port = port
        self.host = host
        self.holder = holder
        who = f" by {holder}" if holder else " by another process"
        super().__init__(f"port {port} on {host} is already in use{who}")


class ReservedPortError(ServerError, ValueError):
    """The port is reserved (the REST API's own port)."""


class ServerStartError(ServerError):
    """The server process exited before it became ready.

    ``log_tail`` holds its last output lines, where llama.cpp says why.
    """

    def __init__(self, message: str, *, exit_code: int | None, log_tail: Sequence[str]) -> None:
        self.exit_code = exit_code
        self.log_tail = list(log_tail)
        tail = "\n".join(self.log_tail)
        super().__init__(f"{message}\n--- last log lines ---\n{tail}" if tail else message)


class ReadinessTimeoutError(ServerError, TimeoutError):
    """The server did not become ready within its timeout and was killed."""


class SupersededError(ServerError):
    """A later request for the same port overtook this one."""


class ServerNotFoundError(ServerError, LookupError):
    """No managed server matches the model name or port."""


class BenchError(LlamaSwitchError):
    """Base class of benchmarking errors."""


class BenchParseError(BenchError, ValueError):
    """llama-bench output could not be parsed; the message names the line or position."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class TaskNotFoundError(BenchError, LookupError):
    """No benchmark task has this id."""


class TaskStateError(BenchError):
    """The task is in a state that forbids the request: cancelling a task that already
    ended, deleting one that is still queued or running. ``state`` names that state."""

    def __init__(self, task_id: str, state: str, message: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(message)


class TaskTimeoutError(BenchError, TimeoutError):
    """Waiting for a benchmark task outlasted its timeout."""
