"""Questions asked of the network and of llama-server without starting anything.

- :func:`health`: ``GET /health`` with a raw HTTP/1.1 request (the readiness and
  liveness probes; the library has no HTTP client dependency);
- :func:`parse_check`: whether llama-server accepts an argv and environment, asked with
  a trailing ``--version`` (it parses everything, then exits at once);
- :func:`port_free`, :func:`bind_free`, :func:`port_holder`: whether a port can be
  listened on, and who holds it when not.
"""

from __future__ import annotations

import asyncio
import contextlib
import encodings.idna  # noqa: F401 - see the note below the imports
import errno
import re
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from llamaswitch._process import spawn_exec
from llamaswitch.servers.checks import is_address

# encodings.idna, above: CPython encodes a host given as text with that codec on its
# first socket call, importing it (and stringprep) then: about a millisecond on the first
# model start's port check, in the middle of the request that waits for it.

__all__ = [
    "HEALTH_TIMEOUT_S",
    "bind_failed",
    "bind_free",
    "connect_host",
    "health",
    "parse_check",
    "port_free",
    "port_holder",
    "url_of",
]

#: How long one ``/health`` question may take.
HEALTH_TIMEOUT_S = 2.0
# struct linger {l_onoff=1, l_linger=0}: close() sends RST (two u_shorts on Windows).
_LINGER_RESET = struct.pack("HH" if sys.platform == "win32" else "ii", 1, 0)
_CONNECT_TEST_S = 0.5
_PARSE_CHECK_TIMEOUT_S = 10.0
# What llama-server prints when its bind fails (current build, then legacy).
_BIND_FAILURES = ("couldn't bind", "exiting due to HTTP server error", "failed to bind")


def connect_host(host: str) -> str:
    """Where to reach a server listening on ``host`` (wildcards mean this machine)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - a listen address, not a bind
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_of(host: str, port: int) -> str:
    """The base URL of a server listening on ``host:port``."""
    shown = connect_host(host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


_ARGUMENT_ERROR = re.compile(
    r'error while handling (argument|environment variable) "([^"]+)": (.*)'
    r"|error: invalid argument: (.*)"
)


async def parse_check(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, str] | None:
    """Whether llama-server accepts ``argv`` and ``env``, asked without starting it.

    ``--version`` comes last: llama.cpp parses every argument and variable before it, and
    exits at once. Returns ``(field, reason)`` for a refusal, None when accepted (or when
    the check itself could not run: the launch then reports what happens).
    """
    try:
        process = await spawn_exec(
            [*argv, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=dict(env),
        )  # fmt: skip
    except (OSError, ValueError):
        return None
    try:
        async with asyncio.timeout(_PARSE_CHECK_TIMEOUT_S):
            output, _ = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None
    if process.returncode == 0:
        return None
    text = output.decode("utf-8", "replace")
    found = _ARGUMENT_ERROR.search(text)
    if found is None:
        last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        return ("extra_args", f"llama-server refused its arguments: {last.strip()}")
    kind, name, why, invalid = found.groups()
    field = "env" if kind == "environment variable" else "extra_args"
    if invalid is not None:
        return ("extra_args", f"llama-server refused {invalid.strip()}: invalid argument")
    return (field, f"llama-server refused {name}: {why.strip()}")


async def health(host: str, port: int, *, timeout_s: float = HEALTH_TIMEOUT_S) -> int | None:
    """The status code of ``GET /health``, None when nothing answers.

    Raw HTTP/1.1 over ``asyncio.open_connection``: the library has no HTTP client
    dependency, and a status line is all readiness needs. The connection is reset
    (SO_LINGER 0) rather than closed: a normal close leaves it in TIME_WAIT for 60 s on
    whichever side closed first, often the server's (it closes after a 503), and a
    server-side TIME_WAIT of a build that set SO_REUSEADDR keeps a build that binds with
    SO_REUSEPORT only (legacy) off the port.
    """
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    try:
        async with asyncio.timeout(timeout_s):
            writer.write(f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            line = await reader.readline()
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(timeout_s):
                await writer.wait_closed()


def bind_free(host: str, port: int) -> bool:
    """Whether a listening socket can bind ``host:port`` now (False: address in use)."""
    family, kind, proto, address = _bind_address(host, port)
    with socket.socket(family, kind, proto) as sock:
        if sys.platform == "win32":
            # Windows' SO_REUSEADDR lets a bind steal a port in use; this option is the
            # check we want there.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined,unused-ignore]
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise
            return False
    return True


def _bind_address(host: str, port: int) -> tuple[int, int, int, Any]:
    """Family, type, protocol and address to bind ``host:port``: an address literal
    needs no lookup (every start tests a port so); a name, or an IPv6 address with a
    scope, asks getaddrinfo."""
    if is_address(host) and "%" not in host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, socket.SOCK_STREAM, 0, (host, port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    except OSError:
        infos = [(socket.AF_INET, socket.SOCK_STREAM, 0, "", (host, port))]
    family, kind, proto, _, address = infos[0]
    return family, kind, proto, address


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (a bind test, then a connect test).

    The bind uses SO_REUSEADDR, so sockets in TIME_WAIT do not count. They can still
    make it fail: llama-server's HTTP library sets SO_REUSEPORT rather than SO_REUSEADDR,
    and Linux lets only a SO_REUSEPORT socket share a port with the TIME_WAIT connections
    of another. Binding with SO_REUSEPORT ourselves would not do either: it succeeds next
    to any listener of the same user that set it too (two llama-servers on one port).
    So a failed bind is followed by a connect: refused means no listener, hence free for
    llama-server; accepted (or no answer) means in use.
    """
    if bind_free(host, port):
        return True
    try:
        with socket.create_connection((connect_host(host), port), timeout=_CONNECT_TEST_S):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def port_holder(port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``port``, when the OS tells us."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def bind_failed(log_tail: Sequence[str]) -> bool:
    """Whether llama-server's last lines say it could not bind its port."""
    return any(marker in line for line in log_tail for marker in _BIND_FAILURES)
