"""The dashboard: the web page at ``/`` (``/ui/``) that shows and drives the service.

The page is static files shipped inside this package (``llamaswitch_http/ui/``): plain
ES modules, a stylesheet and a vendored Chart.js. Nothing is fetched from elsewhere, and
the page talks to the service only through the documented REST API and event stream, so
everything it shows a script can get too. Routes::

    GET /                        302 to /ui/
    GET /ui                      302 to /ui/
    GET /ui/                     the page (revalidated on every load: ETag, no-cache)
    GET /ui/v/{version}/{path}   an asset; cached for a year when ``version`` is current

``version`` is a digest of every asset, written into the page when it is served, so a
new llamaswitch never meets a stale cached script, and an unchanged one is never asked
for its scripts again. Relative imports inside the modules inherit the versioned folder.

The files answer without the API key (they hold no data; the page asks for the key and
sends it on each API call). The page learns whether to ask from a ``<meta>`` tag rather
than from a probe that fails with 401, which a browser would log as an error.

Every file is read and gzip-compressed once, on the first request, off the event loop;
about 300 kB of text compresses in a few milliseconds, and answers are then served from
memory. Each answer carries a Content-Security-Policy that allows only this origin (no
inline script or style), so a name or log line that slipped through escaping could not
run as code.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import attrs
from aiohttp import web

from llamaswitch_http._auth import open_without_key

#: The dashboard's pages, in the order of its menu (``/ui/#/<page>``).
PAGES: Final = ("overview", "models", "logs", "benchmarks", "tune", "activity")

__all__ = ["CSP", "UI_ASSETS", "UI_ROOT", "UiAssets", "UiBundle", "add_ui_routes"]

#: Where the dashboard's files live inside the package.
UI_ROOT: Final = Path(__file__).resolve().parent / "ui"

#: Only this origin, for everything; no inline code, no framing, no plugins.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
#: Bodies smaller than this go out as they are: gzip's header would eat the gain.
_GZIP_MIN_BYTES: Final = 1024
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
_REVALIDATE: Final = "no-cache"
_BASE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@attrs.frozen
class UiAsset:
    """One file, ready to send: its bytes, their gzip form (if smaller) and its ETag."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str

    @classmethod
    def from_bytes(cls, body: bytes, content_type: str) -> UiAsset:
        """Compress (when it pays) and tag ``body``."""
        gzipped = None
        if len(body) >= _GZIP_MIN_BYTES:
            # mtime=0: the same bytes compress to the same bytes, whenever they are served.
            packed = gzip.compress(body, compresslevel=9, mtime=0)
            if len(packed) < len(body) * 0.9:
                gzipped = packed
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return cls(body, gzipped, content_type, etag)


@attrs.frozen
class UiBundle:
    """Every asset of the dashboard, the page itself, and their common version."""

    version: str
    files: Mapping[str, UiAsset]
    index: UiAsset


def _load(root: Path, *, auth_required: bool) -> UiBundle:
    raw: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in _CONTENT_TYPES:
            raw[path.relative_to(root).as_posix()] = path.read_bytes()
    page = raw.pop("index.html")
    digest = hashlib.blake2b(digest_size=8)
    for name, body in raw.items():
        digest.update(name.encode() + b"\0" + body + b"\0")
    version = digest.hexdigest()
    files = {
        name: UiAsset.from_bytes(body, _CONTENT_TYPES[Path(name).suffix])
        for name, body in raw.items()
    }
    rendered = page.replace(b"{{version}}", version.encode()).replace(
        b"{{auth}}", b"bearer" if auth_required else b"none"
    )
    return UiBundle(version, files, UiAsset.from_bytes(rendered, _CONTENT_TYPES[".html"]))


class UiAssets:
    """The dashboard's files of one app, read and compressed on first use."""

    def __init__(self, root: Path = UI_ROOT, *, auth_required: bool) -> None:
        self.root = root
        self.auth_required = auth_required
        self._bundle: UiBundle | None = None
        self._lock = asyncio.Lock()

    async def bundle(self) -> UiBundle:
        """The files (read from disk and compressed once, in a worker thread)."""
        if self._bundle is None:
            async with self._lock:
                if self._bundle is None:
                    self._bundle = await asyncio.to_thread(
                        _load, self.root, auth_required=self.auth_required
                    )
        return self._bundle


#: The app's dashboard files.
UI_ASSETS: Final = web.AppKey("ui_assets", UiAssets)


def _accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in {"gzip", "*"}:
            return params.replace(" ", "").lower() not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


def _send(request: web.Request, asset: UiAsset, cache_control: str) -> web.Response:
    headers = {
        **_BASE_HEADERS,
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)


@open_without_key
async def _to_ui(request: web.Request) -> web.Response:
    """``GET /`` and ``GET /ui``: the dashboard lives at ``/ui/``."""
    return web.Response(status=302, headers={"Location": "/ui/", **_BASE_HEADERS})


@open_without_key
async def _page(request: web.Request) -> web.Response:
    """``GET /ui/``: the page, naming the current asset version."""
    bundle = await request.app[UI_ASSETS].bundle()
    return _send(request, bundle.index, _REVALIDATE)


@open_without_key
async def _asset(request: web.Request) -> web.Response:
    """``GET /ui/v/{version}/{path}``: one file (looked up by name: no path is ever
    joined onto the disk, so ``..`` cannot escape the folder)."""
    bundle = await request.app[UI_ASSETS].bundle()
    asset = bundle.files.get(request.match_info["path"])
    if asset is None:
        raise web.HTTPNotFound()
    # An old version (a page loaded before an upgrade) still gets today's file, but must
    # not keep it forever under the old name.
    current = request.match_info["version"] == bundle.version
    return _send(request, asset, _IMMUTABLE if current else _REVALIDATE)


def add_ui_routes(app: web.Application, *, auth_required: bool, root: Path = UI_ROOT) -> None:
    """Serve the dashboard from ``app``; ``auth_required`` makes the page ask for the key."""
    app[UI_ASSETS] = UiAssets(root, auth_required=auth_required)
    app.router.add_get("/", _to_ui)
    app.router.add_get("/ui", _to_ui)
    app.router.add_get("/ui/", _page)
    app.router.add_get("/ui/v/{version}/{path:.+}", _asset)
