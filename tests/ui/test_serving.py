"""How the dashboard's files are served: in the package, versioned, cached, compressed,
under a strict Content-Security-Policy, and open without the API key (the API is not)."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

from llamaswitch_http._ui import CSP, UI_ROOT
from tests.rest.conftest import client_for, make_settings, run
from tests.ui.conftest import ROOT, need

KEY = "ui-test-key"


def _version(page: str) -> str:
    match = re.search(r'src="v/([0-9a-f]+)/js/app\.js"', page)
    assert match, page
    return match.group(1)


def test_root_and_ui_redirect_to_the_dashboard(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            for path in ("/", "/ui"):
                response = await client.get(path, allow_redirects=False)
                assert response.status == 302
                assert response.headers["Location"] == "/ui/"

    run(scenario())


def test_the_page_names_its_assets_by_version_and_is_revalidated(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            response = await client.get("/ui/")
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"
            page = await response.text()
            assert "{{" not in page
            assert '<meta name="llamaswitch-auth" content="none">' in page
            version = _version(page)
            again = await client.get("/ui/", headers={"If-None-Match": response.headers["ETag"]})
            assert again.status == 304
            script = await client.get(f"/ui/v/{version}/js/app.js")
            assert script.status == 200
            assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
            assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"

    run(scenario())


def test_an_asset_under_an_old_version_is_served_but_not_cached_for_long(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            response = await client.get("/ui/v/0000000000000000/app.css")
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/css; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"

    run(scenario())


def test_every_answer_carries_a_same_origin_only_csp(models_dir: Path, tmp_path: Path) -> None:
    assert "'unsafe-inline'" not in CSP
    assert "'unsafe-eval'" not in CSP

    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            page = await client.get("/ui/")
            version = _version(await page.text())
            for path in ("/ui/", f"/ui/v/{version}/js/app.js", f"/ui/v/{version}/app.css"):
                response = await client.get(path)
                assert response.headers["Content-Security-Policy"] == CSP, path
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"

    run(scenario())


def test_the_page_has_no_inline_script_or_style() -> None:
    page = (UI_ROOT / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert "<style" not in page
    assert " style=" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers


def test_text_assets_are_gzipped_for_clients_that_accept_it(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            version = _version(await (await client.get("/ui/")).text())
            path = f"/ui/v/{version}/vendor/chart.umd.min.js"
            packed = await client.get(
                path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
            )
            assert packed.headers["Content-Encoding"] == "gzip"
            assert packed.headers["Vary"] == "Accept-Encoding"
            body = await packed.read()
            plain = await client.get(path, headers={"Accept-Encoding": "identity"})
            assert "Content-Encoding" not in plain.headers
            raw = await plain.read()
            assert gzip.decompress(body) == raw
            assert len(body) < len(raw) / 2

    run(scenario())


def test_an_unknown_asset_is_404_and_paths_cannot_escape_the_folder(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            for path in (
                "/ui/v/x/missing.js",
                "/ui/v/x/../../_ui.py",
                "/ui/v/x/%2e%2e/%2e%2e/_ui.py",
                "/ui/v/x/..%2F..%2F_ui.py",
                "/ui/v/x/index.html",  # the page is only served at /ui/, rendered
            ):
                response = await client.get(path)
                assert response.status == 404, path
                assert "add_ui_routes" not in await response.text()

    run(scenario())


def test_with_a_key_the_files_load_without_it_and_the_api_still_needs_it(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(None, models_dir, tmp_path / "state", api_key=KEY)
        async with client_for(settings) as client:
            page = await client.get("/ui/")
            assert page.status == 200
            text = await page.text()
            assert '<meta name="llamaswitch-auth" content="bearer">' in text
            assert KEY not in text
            version = _version(text)
            assert (await client.get(f"/ui/v/{version}/js/app.js")).status == 200
            assert (await client.get("/", allow_redirects=False)).status == 302
            for path in (
                "/api/v1/models",
                "/ui/../api/v1/models",
                "/ui/v/x/../../../api/v1/models",
                "/ui/%2e%2e/api/v1/models",
            ):
                response = await client.get(path)
                assert response.status in {401, 404}, path
                if response.status == 404:
                    assert (await response.json())["data"]["code"] == "not_found"
                else:
                    assert (await response.json())["data"]["code"] == "unauthorized"

    run(scenario())


def test_every_asset_has_a_known_content_type() -> None:
    served = {".html", ".js", ".css", ".svg", ".json", ".txt"}
    for path in UI_ROOT.rglob("*"):
        if path.is_file():
            assert path.suffix in served, path


def test_the_vendored_chart_library_is_the_pinned_npm_package() -> None:
    need(
        (ROOT / "ui" / "node_modules").is_dir(),
        "ui/node_modules is missing: run `npm ci --prefix ui`",
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "ui" / "vendor.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_vendored_libraries_ship_their_licenses() -> None:
    vendor = UI_ROOT / "vendor"
    assert (vendor / "chart.umd.min.js").exists()
    assert "MIT License" in (vendor / "chart.js.LICENSE.txt").read_text(encoding="utf-8")
    assert "MIT" in (vendor / "kurkle-color.LICENSE.txt").read_text(encoding="utf-8")
