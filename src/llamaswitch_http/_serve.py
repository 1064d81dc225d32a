"""``run_server()``: serve the REST API until SIGINT or SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import sys
from collections.abc import Callable
from typing import Final

import attrs
from aiohttp import web

from llamaswitch._errors import LlamaSwitchError, PortInUseError, SettingsError
from llamaswitch._settings import Settings, is_loopback
from llamaswitch.servers.probes import connect_host
from llamaswitch_http._app import create_app
from llamaswitch_http._state import CORE, UPSTREAM
from llamaswitch_http._upstreams import warm_up

__all__ = ["check_bind", "run_server"]

logger = logging.getLogger(__name__)

#: Seconds in-flight requests get to finish on shutdown before they are cancelled. A
#: ``switch?wait=true`` can wait minutes for a big model; a stop must not.
SHUTDOWN_TIMEOUT_S: Final = 5.0


def check_bind(settings: Settings, *, insecure: bool = False) -> None:
    """Refuse to listen beyond this machine without an API key (unless ``insecure`` or
    the ``LLAMASWITCH_INSECURE`` setting).

    The API starts processes and reads model files: on an open address without a key,
    anyone on the network could.
    """
    host = settings.server_host
    if insecure or settings.insecure or settings.api_key or is_loopback(host):
        return
    raise SettingsError(
        "LLAMASWITCH_HOST",
        host,
        settings.sources.get("server_host", "argument"),
        "a loopback address (127.0.0.1, ::1 or localhost) unless LLAMASWITCH_API_KEY is "
        "set; anyone who can reach a non-loopback address could start processes. Set a "
        "key, or pass --insecure if this network is yours alone",
    )


def _announce(url: str) -> None:
    print(f"llamaswitch: serving on {url} (Ctrl-C to stop)", flush=True)


def run_server(
    settings: Settings,
    *,
    insecure: bool = False,
    host: str | None = None,
    port: int | None = None,
    announce: Callable[[str], None] = _announce,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop model servers, interrupt benchmarks, return.

    ``host`` and ``port`` override ``settings.server_host`` and ``settings.server_port``
    (the port is reserved: no model server is ever given it). ``announce`` gets the base
    URL once the socket listens. Raises :class:`~llamaswitch.SettingsError` for a
    non-loopback address without an API key (unless ``insecure``) and
    :class:`~llamaswitch.PortInUseError` when the address is taken.
    """
    if host is not None or port is not None:
        # The port becomes SERVER_PORT, so the core never hands it to a model server.
        given = [f for f, v in (("server_host", host), ("server_port", port)) if v is not None]
        settings = attrs.evolve(
            settings,
            server_host=settings.server_host if host is None else host,
            server_port=settings.server_port if port is None else port,
            sources={**settings.sources, **dict.fromkeys(given, "argument")},
        )
    if insecure and not settings.insecure:
        # Model servers beyond loopback follow the same rule as the API itself.
        settings = attrs.evolve(
            settings, insecure=True, sources={**settings.sources, "insecure": "argument"}
        )
    check_bind(settings)
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(_serve(settings, announce))


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``LLAMASWITCH_EVENT_LOOP`` picks: uvloop's for ``auto`` where it is
    installed, else asyncio's (None)."""
    if choice == "asyncio" or sys.platform == "win32":
        return None
    try:
        import uvloop  # optional (the http extra, off Windows); only the service needs it
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def _reload_presets(app: web.Application) -> None:
    """SIGHUP: read the presets again; a bad file is logged and the old presets stay."""
    try:
        presets = await app[CORE].reload_presets()
    except LlamaSwitchError as exc:  # the gateway logged why; the old presets stay
        logger.debug("SIGHUP reload refused: %s", exc)
        return
    logger.info("SIGHUP: %d presets in effect", len(presets.models))


def freeze_start_up() -> None:
    """Leave the objects of start-up (modules, the app, the catalog: some 60,000, all as
    long-lived as the service) out of every later garbage collection.

    A full collection walks every tracked object, and stops the loop while it does: all
    streams in flight stall with it. Measured here under a load of warm requests (60 s):
    one every 21 s, of 41-53 ms; with the start-up frozen (63,000 objects), one every
    8 s, of 1.5-2.4 ms: a tenth of the time stopped, in pauses a twentieth as long.
    Nothing frozen is collected again, so this comes once, when start-up is over."""
    gc.freeze()


async def _serve(settings: Settings, announce: Callable[[str], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: no loop signal handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    # Access logs cost a third of the throughput of a cheap route; errors are still logged.
    app = create_app(settings=settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    if hasattr(signal, "SIGHUP"):  # not on Windows: POST /api/v1/presets/reload there
        reloads: set[asyncio.Task[None]] = set()

        def reload() -> None:
            task = asyncio.ensure_future(_reload_presets(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
    await runner.setup()  # opens the core: leftovers of a crashed run are stopped here
    try:
        site = web.TCPSite(runner, settings.server_host, settings.server_port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise PortInUseError(settings.server_port, settings.server_host) from exc
            # Not a conflict: an address this machine does not have, or a port this user
            # may not bind. Both are settings to fix.
            if exc.errno == errno.EACCES:
                key, field, value = "SERVER_PORT", "server_port", str(settings.server_port)
                allowed = f"a port this user may listen on ({exc.strerror})"
            else:
                key, field, value = "LLAMASWITCH_HOST", "server_host", settings.server_host
                allowed = f"an address of this machine ({exc.strerror or exc})"
            source = settings.sources.get(field, "argument")
            raise SettingsError(key, value, source, allowed) from exc
        logger.info("listening on %s", _url(settings.server_host, settings.server_port))
        announce(_url(settings.server_host, settings.server_port))
        await warm_up(app[UPSTREAM], _url(connect_host(settings.server_host), settings.server_port))
        freeze_start_up()
        await stop.wait()
    finally:
        # Stops listening, ends event streams, lets requests finish, then closes the
        # core: model servers stopped and reaped, running benchmarks `interrupted`.
        await runner.cleanup()
        if sys.platform != "win32":
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
