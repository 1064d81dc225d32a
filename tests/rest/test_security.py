"""Who may call the service: the API key on every route but health, no open bind without a
key, no cross-site writes from browsers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamaswitch._errors import SettingsError
from llamaswitch_http._app import ROUTES
from llamaswitch_http._serve import check_bind, run_server
from tests.rest.conftest import call, client_for, make_settings, run, serve_env

KEY = "s3cret-key"
PROTECTED = [
    *((method, path) for method, path, _ in ROUTES if path != "/api/v1/health"),
    # The gateway's catch-alls: the pass-through and any other /v1/ path.
    ("GET", "/upstream/tiny/props"), ("POST", "/v1/some/other/route"),
]  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "not-bearer", "longer", "empty"],
)
def test_every_protected_route_needs_the_key(
    headers: dict[str, str], models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(None, models_dir, tmp_path / "state", api_key=KEY)
        async with client_for(settings) as client:
            for method, path in PROTECTED:
                response = await client.request(method, path, headers=headers)
                body = await response.json()
                assert response.status == 401, (method, path, body)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert KEY not in json.dumps(body)
                if path.startswith("/v1/messages"):  # Anthropic's error shape
                    assert body["error"]["type"] == "authentication_error", body
                elif path.startswith(("/v1/", "/upstream/")) or "success" not in body:
                    assert body["error"]["code"] == "unauthorized", (path, body)  # OpenAI's
                else:
                    assert body["success"] is False
                    assert body["data"]["code"] == "unauthorized"
            # Unknown routes too: without the key, nothing says which routes exist.
            assert (await client.get("/api/v1/secret-route", headers=headers)).status == 401

    run(scenario())


def test_health_is_open_and_the_right_key_opens_the_rest(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = make_settings(None, models_dir, tmp_path / "state", api_key=KEY)
        async with client_for(settings) as client:
            await call(client, "GET", "/api/v1/health", status=200)
            auth = {"Authorization": f"Bearer {KEY}"}
            await call(client, "GET", "/api/v1/models", status=200, headers=auth)
            await call(client, "GET", "/api/v1/model/status", status=200, headers=auth)
            lower = {"Authorization": f"bearer {KEY}"}  # the scheme is case-insensitive
            await call(client, "GET", "/api/v1/models", status=200, headers=lower)
            metrics = await client.get("/metrics", headers=auth)
            assert metrics.status == 200

    run(scenario())


def test_without_a_key_every_route_is_open(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            await call(client, "GET", "/api/v1/models", status=200)

    run(scenario())


def test_a_browser_post_from_another_site_is_refused(models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with client_for(make_settings(None, models_dir, tmp_path / "state")) as client:
            for origin in ("http://evil.example", "null"):
                body = await call(
                    client, "POST", "/api/v1/model/stop", status=403, headers={"Origin": origin}
                )
                assert body["data"]["code"] == "cross_site_request"
            same = f"http://{client.host}:{client.port}"
            await call(client, "POST", "/api/v1/model/stop", status=200, headers={"Origin": same})
            # Reading is harmless (the browser keeps the answer from the other site).
            await call(
                client,
                "GET",
                "/api/v1/models",
                status=200,
                headers={"Origin": "http://evil.example"},
            )

    run(scenario())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "my-host"])
def test_a_non_loopback_bind_without_a_key_is_refused(
    host: str, models_dir: Path, tmp_path: Path
) -> None:
    settings = make_settings(None, models_dir, tmp_path / "state", server_host=host)
    with pytest.raises(SettingsError, match="LLAMASWITCH_API_KEY") as info:
        run_server(settings)
    assert info.value.key == "LLAMASWITCH_HOST"
    check_bind(settings, insecure=True)  # explicitly allowed
    check_bind(make_settings(None, models_dir, tmp_path / "s", server_host=host, api_key=KEY))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_binds_need_no_key(host: str, models_dir: Path, tmp_path: Path) -> None:
    check_bind(make_settings(None, models_dir, tmp_path / "state", server_host=host))


def test_serve_refuses_an_open_bind_without_a_key_before_starting_anything(
    models_dir: Path, tmp_path: Path
) -> None:
    env = {"MODELS_DIR": str(models_dir), "LLAMASWITCH_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "llamaswitch", "serve", "--host", "0.0.0.0", "--port", "18999"],
        env=serve_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert "LLAMASWITCH_API_KEY" in result.stderr
    assert "--insecure" in result.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "192.0.2.7"])
def test_a_loopback_service_refuses_foreign_host_headers(
    host: str, models_dir: Path, tmp_path: Path
) -> None:
    # DNS rebinding: a page on evil.example re-resolves its name to 127.0.0.1 and calls
    # the service "same-origin"; the Host header still names evil.example.
    async def scenario() -> None:
        settings = make_settings(None, models_dir, tmp_path / "state")
        async with client_for(settings) as client:
            body = await call(client, "GET", "/api/v1/models", status=403,
                              headers={"Host": host})  # fmt: skip
            assert body["data"]["code"] == "foreign_host"
            for local in ("localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080"):
                await call(client, "GET", "/api/v1/models", status=200, headers={"Host": local})

    run(scenario())


def test_a_date_at_the_edge_of_the_calendar_is_a_validation_error(
    models_dir: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        settings = make_settings(None, models_dir, tmp_path / "state")
        async with client_for(settings) as client:
            body = await call(client, "GET", "/api/v1/benchmarks?since=0001-01-01T00:00:00%2B05:00",
                              status=422)  # fmt: skip
            assert any("$.query.since" in error for error in body["data"]["errors"])

    run(scenario())
