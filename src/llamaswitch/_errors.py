"""The exceptions llamaswitch raises, each kind declared once with its code, HTTP status
and CLI exit code.

Every error the library raises on purpose derives from :class:`LlamaSwitchError`;
lower-layer errors (``OSError``, ``psutil.Error``, NVML errors, ``sqlite3.Error``) are
translated at one boundary and chained with ``raise ... from``::

    LlamaSwitchError                  (a bug, on the service's side: 500)
    ├── InternalServiceError          the service failed on a bug: 500 with a trace id
    ├── ServiceClosedError            the object (or the service) is closed or closing
    ├── SettingsError                 a setting has a bad value (names key, value, source)
    ├── ConfigValidationError         a config field (or request field) is invalid
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
    ├── BenchError                    the benchmark history cannot be used (a database)
    │   ├── BenchParseError           llama-bench output could not be parsed
    │   ├── TaskNotFoundError         unknown benchmark task id
    │   ├── TaskStateError            the task's state forbids it (delete a running one...)
    │   └── TaskTimeoutError          waiting for a task outlasted its timeout
    ├── TuneError                     tuning cannot be used (its study database)
    │   ├── TuneNotFoundError         unknown tune id
    │   ├── TuneStateError            the tune's state forbids it (resume a running one...)
    │   └── TuneTimeoutError          waiting for a tune outlasted its timeout
    ├── DependencyMissingError        an optional extra is not installed (names the extra)
    ├── ClusterError                  the Ray cluster cannot be reached or used
    │   ├── HostNotFoundError         no cluster host has that name
    │   └── HostLostError             the host left the cluster (its servers are lost)
    ├── GatewayError                  a model a client named cannot serve it (503)
    │   ├── ModelLoadError            loading it on demand failed (with the log tail)
    │   ├── ModelTooLargeError        it cannot fit in the budgets even alone
    │   ├── PlacementTimeoutError     the models in its way did not drain in time
    │   └── QueueFullError            too many requests wait for it (429)
    ├── PresetsError                  the presets file is invalid (file, table, key)
    ├── RequestError                  what a client sent is not a request the API takes
    │   ├── MalformedBodyError        the body is not JSON
    │   ├── AmbiguousBodyError        a JSON object names one key twice
    │   ├── RequestTimeoutError       the body did not arrive in time
    │   ├── RequestTooLargeError      the body is larger than the service takes
    │   ├── UnsupportedMediaTypeError the body is not sent as JSON
    │   ├── RouteNotFoundError        no such route (an older or different service)
    │   └── MethodNotAllowedError     the route does not take that method
    └── AccessError
        ├── UnauthorizedError         no API key, or the wrong one
        ├── ForbiddenError
        │   ├── CrossSiteRequestError a browser's write from another site
        │   └── ForeignHostError      a Host naming another machine (DNS rebinding)
        ├── ServiceUnreachableError   nothing answers at the URL (the remote client)
        └── BadResponseError          something answered, but not llamaswitch

Each class states its ``code`` (the envelope's ``data.code``), its ``http_status`` and
its CLI ``cli_exit_code`` once: the REST adapter, the CLI and the OpenAPI document derive
from them, and the remote client (:mod:`llamaswitch.client`) rebuilds the same class
from the code, so a command exits alike in-process and against a service. Structured
attributes (``port``, ``suggestions``, ``log_tail``...) travel as the envelope's data
(:meth:`LlamaSwitchError.details`, :meth:`LlamaSwitchError.from_details`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar

__all__ = [
    "ERROR_KINDS",
    "EXIT_CONFLICT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AccessError",
    "AmbiguousBodyError",
    "BadResponseError",
    "BenchError",
    "BenchParseError",
    "BinaryIdentityError",
    "BinaryNotFoundError",
    "ClusterError",
    "ConfigValidationError",
    "CrossSiteRequestError",
    "DependencyMissingError",
    "ForbiddenError",
    "ForeignHostError",
    "GatewayError",
    "HostLostError",
    "HostNotFoundError",
    "InternalServiceError",
    "LlamaSwitchError",
    "MalformedBodyError",
    "MethodNotAllowedError",
    "ModelError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelPathError",
    "ModelTooLargeError",
    "ModelUnusableError",
    "PlacementTimeoutError",
    "PortInUseError",
    "PrerequisiteMissingError",
    "PresetsError",
    "QueueFullError",
    "ReadinessTimeoutError",
    "RequestError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ReservedPortError",
    "RouteNotFoundError",
    "ServerError",
    "ServerNotFoundError",
    "ServerStartError",
    "ServiceClosedError",
    "ServiceUnreachableError",
    "SettingsError",
    "SupersededError",
    "TaskNotFoundError",
    "TaskStateError",
    "TaskTimeoutError",
    "ToolchainError",
    "TuneError",
    "TuneNotFoundError",
    "TuneStateError",
    "TuneTimeoutError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "UnsupportedOptionError",
]

# Exit codes scripts rely on (docs/cli.md has the table).
EXIT_OK: Final = 0
#: The operation failed (a server did not start, a benchmark failed, a wait timed out).
EXIT_FAILED: Final = 1
#: Bad usage or input: an option, a config field, a setting.
EXIT_USAGE: Final = 2
#: Something required is missing: a model, a llama.cpp binary, a server, a task.
EXIT_MISSING: Final = 3
#: A conflict: a port in use, the API's own port, a superseded switch, a task's state.
EXIT_CONFLICT: Final = 4
#: The service cannot be reached, refused the key, or is not llamaswitch.
EXIT_UNREACHABLE: Final = 5
#: Interrupted (Ctrl-C) where that is not the normal way to end.
EXIT_INTERRUPTED: Final = 130

E = TypeVar("E", bound="LlamaSwitchError")

#: Every error kind by its code: how the remote client turns an envelope back into the
#: exception the service raised.
ERROR_KINDS: dict[str, type[LlamaSwitchError]] = {}


class LlamaSwitchError(Exception):
    """Base class of every error llamaswitch raises on purpose.

    Raised bare, it means a fault llamaswitch did not foresee.
    """

    #: The envelope's ``data.code``: unique per class, stable across versions.
    code: ClassVar[str] = "error"
    #: What the REST API answers with.
    http_status: ClassVar[int] = 500
    #: What a CLI command exits with.
    cli_exit_code: ClassVar[int] = EXIT_FAILED
    #: The envelope's short ``message``.
    title: ClassVar[str] = "Internal server error"
    #: Attributes that travel in the envelope's ``data`` (and are rebuilt from it).
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            known = ERROR_KINDS.get(cls.code)
            if known is not None and known is not cls:
                raise TypeError(f"error code {cls.code!r} is taken by {known.__name__}")
            ERROR_KINDS[cls.code] = cls

    def details(self) -> dict[str, Any]:
        """The structured attributes, JSON-ready (tuples as lists)."""
        return {name: _json_ready(getattr(self, name, None)) for name in self.fields}

    @classmethod
    def from_details(cls: type[E], message: str, details: Mapping[str, Any]) -> E:
        """An instance of ``cls`` with ``message`` and the attributes of ``details``,
        without its constructor (each class builds its message its own way)."""
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        for name in cls.fields:
            setattr(error, name, details.get(name))
        error._rebuilt(details)
        return error

    def _rebuilt(self, details: Mapping[str, Any]) -> None:
        """Fix up attributes whose JSON form differs from their Python one."""


ERROR_KINDS[LlamaSwitchError.code] = LlamaSwitchError


def _json_ready(value: object) -> object:
    if isinstance(value, tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


class InternalServiceError(LlamaSwitchError):
    """The service failed on a bug; ``trace_id`` matches its logged traceback."""

    code = "internal_error"
    fields = ("trace_id",)

    def __init__(self, message: str, *, trace_id: str | None = None) -> None:
        self.trace_id = trace_id
        super().__init__(message)


class ServiceClosedError(LlamaSwitchError):
    """The object was closed (or is closing): it takes no more requests.

    Raised by a closed :class:`~llamaswitch.AsyncLlamaSwitch`, its catalog, supervisor or
    benchmark runner, and by a service that is shutting down.
    """

    code = "service_closed"
    http_status = 503
    cli_exit_code = EXIT_UNREACHABLE
    title = "Service closing"


class SettingsError(LlamaSwitchError, ValueError):
    """A setting has a bad value.

    The message names the key, the value, where it came from and what is allowed.
    """

    code = "settings_error"
    http_status = 500  # the service's own configuration: never the client's fault
    cli_exit_code = EXIT_USAGE
    title = "Configuration error"
    fields = ("key", "value", "source", "allowed")

    def __init__(self, key: str, value: object, source: str, allowed: str) -> None:
        self.key = key
        self.value = value
        self.source = source
        self.allowed = allowed
        super().__init__(f"{key}={value!r} (from {source}) is invalid: {allowed}")

    def details(self) -> dict[str, Any]:
        """The key, the value as text, its source and what is allowed."""
        return {"key": self.key, "value": str(self.value), "source": self.source,
                "allowed": self.allowed}  # fmt: skip


class ConfigValidationError(LlamaSwitchError, ValueError):
    """One or more fields of a config (or of a request) are invalid.

    ``errors`` holds ``(field path, reason)`` pairs, one per bad field.
    """

    code = "validation_error"
    http_status = 422
    cli_exit_code = EXIT_USAGE
    title = "Validation failed"
    fields = ("errors",)

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in self.errors))

    def details(self) -> dict[str, Any]:
        """``errors``: every problem as ``reason @ $.path`` (the seed's style); ``fields``:
        the same as ``{"path", "reason"}`` objects, for clients that act on them."""
        rooted = [(_json_path(path), reason) for path, reason in self.errors]
        return {
            "errors": [f"{reason} @ {path}" for path, reason in rooted],
            "fields": [{"path": path, "reason": reason} for path, reason in rooted],
        }

    def _rebuilt(self, details: Mapping[str, Any]) -> None:
        pairs = details.get("fields") or []
        self.errors = [(str(p.get("path", "")), str(p.get("reason", ""))) for p in pairs]


def _json_path(path: str) -> str:
    """A field path as JSON path: ``config.threads`` -> ``$.config.threads``."""
    if path.startswith("$"):
        return path
    if not path:
        return "$"
    return f"${path}" if path.startswith("[") else f"$.{path}"


class BinaryNotFoundError(LlamaSwitchError, FileNotFoundError):
    """llama-server or llama-bench could not be found or is not executable."""

    code = "binary_not_found"
    http_status = 503
    cli_exit_code = EXIT_MISSING
    title = "llama.cpp binary not found"


class BinaryIdentityError(LlamaSwitchError):
    """A binary did not answer ``--version`` or ``--help`` the way llama.cpp does."""

    code = "binary_unusable"
    http_status = 503
    cli_exit_code = EXIT_MISSING
    title = "llama.cpp binary unusable"


class UnsupportedOptionError(LlamaSwitchError, ValueError):
    """The llama.cpp binary in use cannot honour a setting.

    The message names the setting, the value and the binary's version.
    """

    code = "unsupported_option"
    http_status = 422
    cli_exit_code = EXIT_USAGE
    title = "Option not supported by the llama.cpp binary"
    fields = ("field", "binary", "version")

    def __init__(self, field: str, value: object, binary: str, version: str, why: str) -> None:
        self.field = field
        self.value = value
        self.binary = binary
        self.version = version
        super().__init__(f"{field}={value!r} is not supported by {binary} {version}: {why}")


class ToolchainError(LlamaSwitchError):
    """Building llama.cpp from its source distribution failed."""

    code = "toolchain_failed"
    title = "Toolchain build failed"


class PrerequisiteMissingError(ToolchainError):
    """A tool the build needs (cmake, a C++ compiler, pip) is not installed.

    ``missing`` names each missing tool; the message says how to install it.
    """

    code = "prerequisite_missing"
    cli_exit_code = EXIT_MISSING
    title = "Build prerequisite missing"
    fields = ("missing",)

    def __init__(self, missing: Sequence[str], message: str) -> None:
        self.missing = list(missing)
        super().__init__(message)


class ModelError(LlamaSwitchError):
    """Base class of model reference errors."""

    code = "model_error"
    http_status = 422
    cli_exit_code = EXIT_USAGE
    title = "Model refused"


class ModelNotFoundError(ModelError, LookupError):
    """No model matches the reference; ``suggestions`` lists the closest names."""

    code = "model_not_found"
    http_status = 404
    cli_exit_code = EXIT_MISSING
    title = "Model not found"
    fields = ("reference", "suggestions")

    def __init__(self, reference: str, suggestions: Sequence[str] = ()) -> None:
        self.reference = reference
        self.suggestions = list(suggestions)
        hint = (
            f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if suggestions else ""
        )
        super().__init__(f"model {reference!r} not found in the models folder{hint}")


class ModelPathError(ModelError, ValueError):
    """A model path resolves outside the models folder."""

    code = "model_path_refused"
    title = "Model path refused"


class ModelUnusableError(ModelError, ValueError):
    """The model file is not one llama.cpp could load: corrupt, truncated, a shard missing.

    Raised before anything is stopped or started; ``reason`` is what the catalog found.
    """

    code = "model_unusable"
    title = "Model unusable"
    fields = ("model", "reason")

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"model {model} cannot be used: {reason}")


class ServerError(LlamaSwitchError):
    """Base class of model server errors."""

    code = "server_error"
    title = "Model server error"


class PortInUseError(ServerError):
    """Another process already listens on the port."""

    code = "port_in_use"
    http_status = 409
    cli_exit_code = EXIT_CONFLICT
    title = "Port in use"
    fields = ("port", "host", "holder")

    def __init__(self, port: int, host: str, holder: str | None = None) -> None:
        self.port = port
        self.host = host
        self.holder = holder
        who = f" by {holder}" if holder else " by another process"
        super().__init__(f"port {port} on {host} is already in use{who}")


class ReservedPortError(ServerError, ValueError):
    """The port is reserved (the REST API's own port)."""

    code = "port_reserved"
    http_status = 409
    cli_exit_code = EXIT_CONFLICT
    title = "Port reserved"


class ServerStartError(ServerError):
    """The server process exited before it became ready.

    ``log_tail`` holds its last output lines, where llama.cpp says why.
    """

    # The model server is the service's upstream: its failure to come up is a gateway
    # error, not a bug of the service.
    code = "server_start_failed"
    http_status = 502
    title = "Model server failed to start"
    fields = ("exit_code", "log_tail")

    def __init__(self, message: str, *, exit_code: int | None, log_tail: Sequence[str]) -> None:
        self.exit_code = exit_code
        self.log_tail = list(log_tail)
        tail = "\n".join(self.log_tail)
        super().__init__(f"{message}\n--- last log lines ---\n{tail}" if tail else message)

    def _rebuilt(self, details: Mapping[str, Any]) -> None:
        self.log_tail = list(details.get("log_tail") or [])


class ReadinessTimeoutError(ServerError, TimeoutError):
    """The server did not become ready within its timeout and was killed."""

    code = "readiness_timeout"
    http_status = 504
    title = "Model server not ready in time"


class SupersededError(ServerError):
    """A later request for the same port overtook this one."""

    code = "superseded"
    http_status = 409
    cli_exit_code = EXIT_CONFLICT
    title = "Switch superseded"


class ServerNotFoundError(ServerError, LookupError):
    """No managed server matches the model name or port."""

    code = "server_not_found"
    http_status = 404
    cli_exit_code = EXIT_MISSING
    title = "Server not found"


class BenchError(LlamaSwitchError):
    """The benchmark history cannot be used (its database), or another benchmark fault."""

    code = "bench_unavailable"
    http_status = 503
    title = "Benchmarks unavailable"


class BenchParseError(BenchError, ValueError):
    """llama-bench output could not be parsed; the message names the line or position."""

    code = "bench_parse_error"
    http_status = 422
    cli_exit_code = EXIT_USAGE
    title = "Benchmark output could not be parsed"
    fields = ("line",)

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class TaskNotFoundError(BenchError, LookupError):
    """No benchmark task has this id."""

    code = "task_not_found"
    http_status = 404
    cli_exit_code = EXIT_MISSING
    title = "Benchmark task not found"


class TaskStateError(BenchError):
    """The task is in a state that forbids the request (deleting one that is still
    queued or running). ``state`` names that state."""

    code = "task_state"
    http_status = 409
    cli_exit_code = EXIT_CONFLICT
    title = "Benchmark task state forbids it"
    fields = ("task_id", "state")

    def __init__(self, task_id: str, state: str, message: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(message)


class TaskTimeoutError(BenchError, TimeoutError):
    """Waiting for a benchmark task outlasted its timeout."""

    code = "task_timeout"
    http_status = 504
    cli_exit_code = EXIT_FAILED
    title = "Benchmark task timed out"


class TuneError(LlamaSwitchError):
    """Tuning cannot be used: its study database (``tune.sqlite3``) failed."""

    code = "tune_unavailable"
    http_status = 503
    title = "Tuning unavailable"


class TuneNotFoundError(TuneError, LookupError):
    """No tune has this id."""

    code = "tune_not_found"
    http_status = 404
    cli_exit_code = EXIT_MISSING
    title = "Tune not found"


class TuneStateError(TuneError):
    """The tune's state forbids the request (resuming one that runs, saving a preset from
    one without a measured trial). ``state`` names that state."""

    code = "tune_state"
    http_status = 409
    cli_exit_code = EXIT_CONFLICT
    title = "Tune state forbids it"
    fields = ("tune_id", "state")

    def __init__(self, tune_id: str, state: str, message: str) -> None:
        self.tune_id = tune_id
        self.state = state
        super().__init__(message)


class TuneTimeoutError(TuneError, TimeoutError):
    """Waiting for a tune outlasted its timeout (the tune keeps running)."""

    code = "tune_timeout"
    http_status = 504
    cli_exit_code = EXIT_FAILED
    title = "Tune timed out"


class DependencyMissingError(LlamaSwitchError, ImportError):
    """An optional part of llamaswitch needs an extra that is not installed.

    ``extra`` names the extra (``pip install 'llamaswitch[tune]'``), ``missing`` the
    modules that could not be imported.
    """

    code = "dependency_missing"
    http_status = 503
    cli_exit_code = EXIT_MISSING
    title = "Optional dependency missing"
    fields = ("extra", "missing")

    def __init__(self, extra: str, missing: Sequence[str], feature: str) -> None:
        self.extra = extra
        self.missing = list(missing)
        super().__init__(
            f"{feature} needs the {extra} extra (missing: {', '.join(self.missing)}); "
            f"install it with: pip install 'llamaswitch[{extra}]'"
        )


class ClusterError(LlamaSwitchError):
    """The Ray cluster cannot be used: it cannot be reached, or it refused a call.

    Raised by a cluster head (:mod:`llamaswitch.cluster`); ``cluster`` is the
    ``LLAMASWITCH_CLUSTER`` setting it runs with.
    """

    code = "cluster_error"
    http_status = 503
    cli_exit_code = EXIT_UNREACHABLE
    title = "Cluster unavailable"
    fields: ClassVar[tuple[str, ...]] = ("cluster",)

    def __init__(self, message: str, *, cluster: str | None = None) -> None:
        self.cluster = cluster
        super().__init__(message)


class HostNotFoundError(ClusterError, LookupError):
    """No host of the cluster (or this machine, alone) has that name; ``hosts`` lists the
    names there are."""

    code = "host_not_found"
    http_status = 404
    cli_exit_code = EXIT_MISSING
    title = "Host not found"
    fields = ("host", "hosts")

    def __init__(self, host: str, hosts: Sequence[str]) -> None:
        self.host = host
        self.hosts = list(hosts)
        known = ", ".join(self.hosts) or "none"
        super().__init__(f"no host named {host!r} (hosts: {known})")


class HostLostError(ClusterError):
    """The host left the cluster (its node died or was removed): its model servers are
    ``lost``, and the gateway places their models on another host."""

    code = "host_lost"
    http_status = 503
    cli_exit_code = EXIT_UNREACHABLE
    title = "Host lost"
    fields = ("host",)

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        super().__init__(f"host {host} left the cluster: {reason}")


class GatewayError(LlamaSwitchError):
    """Base class of the gateway's errors: a model named by a client could not serve it."""

    code = "gateway_error"
    http_status = 503
    title = "Model unavailable"


class ModelLoadError(GatewayError):
    """Loading a model on demand failed; every request that waited for that load gets it.

    ``log_tail`` holds the server's last lines; ``retry_after_s`` says when the next
    request may try again (loads of a broken model back off).
    """

    code = "model_load_failed"
    title = "Model failed to load"
    fields = ("model", "reason", "log_tail", "retry_after_s")

    def __init__(
        self,
        model: str,
        reason: str,
        *,
        log_tail: Sequence[str] = (),
        retry_after_s: float | None = None,
    ) -> None:
        self.model = model
        self.reason = reason
        self.log_tail = list(log_tail)
        self.retry_after_s = retry_after_s
        tail = "\n".join(self.log_tail)
        message = f"model {model} failed to load: {reason}"
        super().__init__(f"{message}\n--- last log lines ---\n{tail}" if tail else message)

    def _rebuilt(self, details: Mapping[str, Any]) -> None:
        self.log_tail = list(details.get("log_tail") or [])


class ModelTooLargeError(GatewayError):
    """The model cannot fit within the memory budgets, even with every model that may be
    unloaded gone; ``reason`` gives the figures. Retrying does not help until the budgets
    or the pinned models change."""

    code = "model_too_large"
    title = "Model does not fit"
    fields = ("model", "reason")

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(reason)


class PlacementTimeoutError(GatewayError):
    """Room for a model could not be made in time: the models in its way kept requests in
    flight longer than the drain timeout (models with requests in flight are never cut)."""

    code = "placement_timeout"
    title = "No room for the model in time"
    fields = ("model", "waiting_for")

    def __init__(self, model: str, waiting_for: Sequence[str], timeout_s: float) -> None:
        self.model = model
        self.waiting_for = list(waiting_for)
        super().__init__(
            f"no room for model {model} after {timeout_s:g} s: "
            f"{', '.join(waiting_for)} still had requests in flight"
        )


class QueueFullError(GatewayError):
    """Too many requests wait for this model already (``LLAMASWITCH_QUEUE_MAX``)."""

    code = "queue_full"
    http_status = 429
    cli_exit_code = EXIT_CONFLICT
    title = "Too many requests queued"
    fields = ("model", "queued", "limit", "retry_after_s")

    def __init__(self, model: str, *, queued: int, limit: int, retry_after_s: float) -> None:
        self.model = model
        self.queued = queued
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"{queued} requests already wait for model {model} (the limit is {limit}); "
            f"retry in {retry_after_s:g} s"
        )


class PresetsError(LlamaSwitchError, ValueError):
    """The presets file is invalid; the last good presets stay in effect.

    ``errors`` holds ``(where, reason)`` pairs, ``where`` naming the table and key
    (``[models.qwen] ctx_size``); ``path`` is the file.
    """

    code = "presets_invalid"
    http_status = 422
    cli_exit_code = EXIT_USAGE
    title = "Presets file invalid"
    fields = ("path", "errors")

    def __init__(self, path: str, errors: Sequence[tuple[str, str]]) -> None:
        self.path = path
        self.errors = list(errors)
        super().__init__(
            "; ".join(f"{path}: {where}: {reason}" if where else f"{path}: {reason}"
                      for where, reason in self.errors)
        )  # fmt: skip

    def details(self) -> dict[str, Any]:
        """The file; ``errors``: every problem as ``reason @ where`` (the seed's style, as
        for every 422); ``fields``: the same as ``{"where", "reason"}`` objects."""
        return {
            "path": self.path,
            "errors": [f"{r} @ {w}" if w else r for w, r in self.errors],
            "fields": [{"where": w, "reason": r} for w, r in self.errors],
        }

    def _rebuilt(self, details: Mapping[str, Any]) -> None:
        self.errors = [(str(e.get("where", "")), str(e.get("reason", "")))
                       for e in details.get("fields") or []]  # fmt: skip


class RequestError(LlamaSwitchError):
    """What a client sent is not a request the REST API takes."""

    code = "bad_request"
    http_status = 400
    cli_exit_code = EXIT_USAGE
    title = "Bad request"


class MalformedBodyError(RequestError):
    """The request body is not valid JSON."""

    code = "bad_json"
    title = "Malformed JSON"


class AmbiguousBodyError(RequestError):
    """A JSON object of the body names one key twice (which would count is a guess)."""

    code = "duplicate_key"
    title = "Malformed JSON"


class RequestTimeoutError(RequestError):
    """The request body did not arrive in time (the connection is closed)."""

    code = "body_timeout"
    http_status = 408
    title = "Request timeout"


class RequestTooLargeError(RequestError):
    """The body is larger than the service takes."""

    code = "request_body_too_large"
    http_status = 413
    title = "Request body too large"


class UnsupportedMediaTypeError(RequestError):
    """The body was not sent as ``application/json``."""

    code = "unsupported_media_type"
    http_status = 415
    title = "Unsupported media type"


class RouteNotFoundError(RequestError):
    """No such route: an older or a different service."""

    code = "not_found"
    http_status = 404
    cli_exit_code = EXIT_UNREACHABLE
    title = "Not found"


class MethodNotAllowedError(RequestError):
    """The route does not take that method."""

    code = "method_not_allowed"
    http_status = 405
    cli_exit_code = EXIT_UNREACHABLE
    title = "Method not allowed"


class AccessError(LlamaSwitchError):
    """The service cannot be used from here: no key, a refused origin, nothing there."""

    code = "access_error"
    http_status = 403
    cli_exit_code = EXIT_UNREACHABLE
    title = "Forbidden"


class UnauthorizedError(AccessError):
    """The service needs an API key (``Authorization: Bearer <key>``), or another one."""

    code = "unauthorized"
    http_status = 401
    title = "Unauthorized"


class ForbiddenError(AccessError):
    """The service refuses this request whoever sends it."""

    code = "forbidden"


class CrossSiteRequestError(ForbiddenError):
    """A browser's write from another site: a page the user opens could otherwise drive
    a service on ``127.0.0.1`` (a form post needs no preflight)."""

    code = "cross_site_request"


class ForeignHostError(ForbiddenError):
    """A ``Host`` naming another machine while the service listens on loopback: how DNS
    rebinding reaches a loopback service."""

    code = "foreign_host"


class ServiceUnreachableError(AccessError):
    """Nothing answers at the service's URL (raised by the remote client)."""

    code = "unreachable"
    http_status = 503
    title = "Service unreachable"


class BadResponseError(AccessError):
    """Something answered at the URL, but not the way llamaswitch does."""

    code = "bad_response"
    http_status = 502
    title = "Not a llamaswitch response"
