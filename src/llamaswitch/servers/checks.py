"""What a launch checks before it acts, beyond what a :class:`ServerConfig` checks itself.

A ``ServerConfig`` validates what needs nothing but its own values. These checks need the
machine, the settings or the binary, so the supervisor runs them before it stops the
server a switch replaces (a refusal must not cost the user the server that runs now):

- the **address**: it resolves, to an address of this machine (:func:`address_problem`);
- **RPC**: ``--rpc`` and ``LLAMA_ARG_RPC`` name only hosts of ``LLAMASWITCH_RPC_HOSTS``
  (:func:`rpc_problems`);
- the **binary**: every flag in ``extra_args`` exists in this llama-server and no spelling
  of it is refused; every ``LLAMA_ARG_*`` variable is one this build reads, as an allowed
  flag (:func:`binary_problems`);
- the **inherited environment**: llamaswitch's own environment reaches the server minus
  the variables ``env`` could not set (:func:`inherited_env`), so that an exported
  ``LLAMA_ARG_PORT`` or ``LLAMA_API_KEY`` cannot take the server out of its control.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import types
from collections.abc import Iterable, Mapping, Sequence

from llamaswitch._capabilities import Capabilities
from llamaswitch._errors import UnsupportedOptionError
from llamaswitch.servers.config import (
    RPC_FLAGS,
    ServerConfig,
    env_flag,
    env_problem,
    flag_problem,
)

__all__ = [
    "InheritedEnv",
    "address_problem",
    "binary_problems",
    "inherited_env",
    "is_address",
    "rpc_problems",
    "rpc_values",
]

#: The environment variable llama-server reads its API key from (both generations).
API_KEY_ENV = "LLAMA_API_KEY"
_RPC_ENV = "LLAMA_ARG_RPC"


@functools.lru_cache(maxsize=256)
def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address literal (no name to look up). Cached: a pure
    function of the text, asked at every start."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def address_problem(host: str) -> tuple[str | None, bool]:
    """Why llama-server could not listen on ``host``, or None; and whether it is loopback.

    Blocking for a name (DNS): call it off the event loop unless :func:`is_address`.
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        return f"does not resolve to an address ({why})", False
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    loopback = all(_is_loopback(address) for address in addresses)
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind((sockaddr[0], 0, *sockaddr[2:]))
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, getattr(errno, "WSAEADDRNOTAVAIL", -1)):
                return (
                    f"resolves to {sockaddr[0]}, which is not an address of this machine",
                    loopback,
                )
            return f"cannot be listened on: {exc.strerror or exc}", loopback
    return None, loopback


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def rpc_values(config: ServerConfig) -> list[tuple[str, str]]:
    """``(field, "host:port,...")`` for every RPC server list the config passes."""
    found: list[tuple[str, str]] = []
    args = config.extra_args
    for index, arg in enumerate(args):
        name, sep, inline = arg.partition("=")
        if name in RPC_FLAGS:
            value = inline if sep else (args[index + 1] if index + 1 < len(args) else "")
            found.append(("extra_args", value))
    for key, value in config.env.items():
        if key.upper() == _RPC_ENV:
            found.append(("env", value))
    return found


def rpc_problems(config: ServerConfig, allowed: Sequence[str]) -> list[tuple[str, str]]:
    """``(field, reason)`` for RPC servers outside ``allowed`` (``HOST`` or ``HOST:PORT``).

    llama.cpp's RPC backend sends the model's weights to the servers it names: only the
    hosts the ``LLAMASWITCH_RPC_HOSTS`` setting lists may be named.
    """
    problems: list[tuple[str, str]] = []
    allowed_set = {entry.lower() for entry in allowed}
    for field, value in rpc_values(config):
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            problems.append((field, "--rpc needs a list of HOST:PORT servers"))
            continue
        if not allowed_set:
            problems.append((field, "--rpc sends the model's weights to the hosts it names; "
                             "list the hosts you allow in LLAMASWITCH_RPC_HOSTS"))  # fmt: skip
            continue
        for server in servers:
            host = server.rsplit(":", 1)[0].strip("[]").lower()
            if server.lower() not in allowed_set and host not in allowed_set:
                problems.append((field, f"RPC server {server!r} is not in LLAMASWITCH_RPC_HOSTS "
                                 f"({', '.join(allowed)})"))  # fmt: skip
    return problems


def binary_problems(
    config: ServerConfig, caps: Capabilities
) -> tuple[list[tuple[str, str]], UnsupportedOptionError | None]:
    """What this binary cannot honour in ``extra_args`` and ``env``.

    Returns the refusals (``(field, reason)``: a spelling of a known flag that the rules
    refuse, such as an alias a typed field covers) and the first option the binary does
    not have at all (an :class:`UnsupportedOptionError` naming its version).
    """
    problems: list[tuple[str, str]] = []
    unsupported: UnsupportedOptionError | None = None
    args = config.extra_args
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        name = arg.split("=", 1)[0]
        if not name.startswith("-") or _is_number(name):
            continue  # a value (of a flag llamaswitch has not met, or a negative number)
        flag = caps.flag(name)
        if flag is None:
            unsupported = unsupported or caps.unsupported(
                "extra_args", arg, f"it has no {name} option"
            )
            continue
        reason = _first_refusal(flag.names)
        if reason is not None:
            problems.append(("extra_args", f"{name} is not allowed: {reason}"))
        if flag.takes_value and "=" not in arg:
            index += 1  # its value, which may start with "-"
    env_flags = caps.env_flags
    for key in config.env:
        if env_flag(key) is None:
            continue
        flag = env_flags.get(key)
        if flag is None:
            unsupported = unsupported or caps.unsupported(
                "env", key, "it reads no such environment variable"
            )
            continue
        reason = _first_refusal(flag.names)
        if reason is not None:
            problems.append(("env", f"{key} is not allowed: llama.cpp reads it as "
                             f"{flag.primary}: {reason}"))  # fmt: skip
    return problems, unsupported


def _first_refusal(names: Iterable[str]) -> str | None:
    for name in names:
        if name in RPC_FLAGS:
            continue  # checked against the settings by rpc_problems
        reason = flag_problem(name)
        if reason is not None:
            return reason
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class InheritedEnv:
    """:func:`inherited_env` of this process's environment, read again only when the
    environment has changed since.

    Reading ``os.environ`` decodes every variable through the mapping's Python methods:
    37 µs for 35 variables in a loop, and about 80 µs on the path of a load on demand,
    after an idle spell (a start's plan took 0.23 ms with it, 0.15 ms without: medians
    of 30 loads, bench/bench_gateway.py's cold load). The raw store behind it
    (``os.environ._data``, in CPython since 3.2) is copied and compared in under a
    microsecond. Where it is not there (another Python), the environment is read each
    time.
    """

    def __init__(self) -> None:
        self._raw: dict[object, object] | None = None
        self._found: Mapping[str, str] = {}

    def __call__(self) -> Mapping[str, str]:
        """The inherited environment (read-only: merge it into a dict of your own)."""
        raw = getattr(os.environ, "_data", None)
        if not isinstance(raw, dict):
            return inherited_env(os.environ)
        if raw != self._raw:
            self._found = types.MappingProxyType(inherited_env(os.environ))
            self._raw = dict(raw)
        return self._found


def inherited_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the llama.cpp variables a server's ``env`` could not set.

    Only llama.cpp's own variables are filtered (``LLAMA_ARG_*``, ``LLAMA_API_KEY``): the
    rest of the manager's environment (``PATH``, the locale, CUDA's) is the server's too.
    """
    result: dict[str, str] = {}
    for key, value in environ.items():
        upper = key.upper()
        if upper == API_KEY_ENV or (upper.startswith("LLAMA_ARG_") and env_problem(key)):
            continue
        result[key] = value
    return result
