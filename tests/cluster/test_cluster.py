"""The cluster head on a real Ray cluster of this machine (``ray.cluster_utils.Cluster``).

Each node has its own models folder, state folder, port range and host name (the
environment of its raylet, which its agent reads as any llamaswitch reads its own), and
every Ray port listens on loopback only (FIELD_NOTES, "Ray on this machine"). The head is
the service in-process, its gateway used through the official openai client.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from llamaswitch._settings import Settings
from llamaswitch.servers.status import ServerState
from llamaswitch.testing import write_tiny_model
from tests.conftest import IN_CI, LlamaBuild, require_build
from tests.gateway.conftest import running, until
from tests.helpers import free_port, free_range
from tests.rest.conftest import make_settings, run

#: Ray on loopback only, and no usage report (FIELD_NOTES, "Ray on this machine"). Set
#: before Ray is imported, which reads them then.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
os.environ.update(RAY_ENV)

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError:  # pragma: no cover - the ray extra is part of dev
    if IN_CI:
        raise
    pytest.skip("ray is not installed (pip install 'llamaswitch[ray]')", allow_module_level=True)


def node_env(
    build: LlamaBuild, root: Path, name: str, *models: str, **extra: str
) -> dict[str, str]:
    """A node's environment: its own models folder (with ``models``), state and ports."""
    folder = root / name / "models"
    for seed, model in enumerate(models, start=1):
        write_tiny_model(folder / f"{model}.gguf", name=model, seed=seed)
    low, high = free_range()
    api_port = free_port()
    while low <= api_port <= high:
        api_port = free_port()
    return {
        **RAY_ENV,
        "LLAMASWITCH_HOST_NAME": name,
        "MODELS_DIR": str(folder),
        "LLAMASWITCH_STATE_DIR": str(root / name / "state"),
        "LLAMA_SERVER_PATH": str(build.server.path),
        "LLAMA_BENCH_PATH": str(build.bench.path),
        "LLAMASWITCH_MODEL_PORTS": f"{low}-{high}",
        "SERVER_PORT": str(api_port),
        "LLAMASWITCH_DEFAULT_MODEL_PORT": str(high + 1),
        **extra,
    }


class Lab:
    """The cluster of a module: nodes ``one`` (the Ray head) and ``two``."""

    def __init__(self, build: LlamaBuild, root: Path) -> None:
        self.build = build
        self.root = root
        # ``one`` has alpha and shared; ``two`` has beta and shared; only one model at a
        # time on ``one``.
        self.envs = {
            "one": node_env(build, root, "one", "alpha", "shared", LLAMASWITCH_MAX_MODELS="1"),
            "two": node_env(build, root, "two", "beta", "shared"),
        }
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "env_vars": self.envs["one"]})  # fmt: skip
        self.cluster.add_node(num_cpus=1, env_vars=self.envs["two"])
        ray.init(address=self.cluster.address, namespace="llamaswitch", log_to_driver=False)

    def head_settings(self, tmp_path: Path) -> Settings:
        (tmp_path / "head-models").mkdir(parents=True, exist_ok=True)
        return make_settings(self.build, tmp_path / "head-models", tmp_path / "head-state",
                             cluster="ray")  # fmt: skip

    def close(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(require_build("current"), tmp_path_factory.mktemp("cluster"))
    os.environ["RAY_ADDRESS"] = lab.cluster.address
    try:
        yield lab
    finally:
        lab.close()
        os.environ.pop("RAY_ADDRESS", None)


def _ray_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        if "ray" in text and any(
            word in text for word in ("raylet", "gcs_server", "ray::", "default_worker", "ray/")
        ):
            found.append(proc)
    return found


def test_every_ray_port_listens_on_loopback_only(lab: Lab) -> None:
    pids = {p.pid for p in _ray_processes()}
    assert pids, "no Ray process found"
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]  # fmt: skip
    assert listening, "Ray listens nowhere?"
    outside = [c for c in listening if not _loopback(c.laddr.ip)]
    assert not outside, outside


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


async def _hosts(gw: Any) -> dict[str, Any]:
    answer = await gw.client.get("/api/v1/hosts")
    assert answer.status == 200
    return {h["name"]: h for h in (await answer.json())["data"]}


def test_a_model_only_on_node_two_is_served_through_the_head(lab: Lab, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            hosts = await _hosts(gw)
            assert set(hosts) == {"one", "two"}
            assert {m["name"] for m in hosts["two"]["models"]} == {"beta.gguf", "shared.gguf"}
            assert hosts["one"]["budget"]["max_models"] == 1
            client = gw.openai()
            answer = await client.completions.create(model="beta", prompt="x", max_tokens=2)
            assert answer.choices[0].text is not None
            await client.close()
            status = (await (await gw.client.get("/api/v1/model/status")).json())["data"]
            beta = [s for s in status if s["model_name"] == "beta.gguf"]
            assert [(s["host_name"], s["state"]) for s in beta] == [("two", "ready")]
            # Listening where the head reaches it, with a key of its own: never open.
            async with gw.client.session.get(f"{beta[0]['url']}/v1/models") as direct:
                assert direct.status == 401
            models = (await (await gw.client.get("/v1/models")).json())["data"]
            listed = {m["id"]: m for m in models}
            assert listed["beta"]["host"] == "two"
            assert sorted(listed["shared"]["hosts"]) == ["one", "two"]
            assert "host_name" in status[0]

    run(scenario())


def test_two_models_that_do_not_fit_one_host_go_to_different_hosts(
    lab: Lab, tmp_path: Path
) -> None:
    # Host one takes one model at a time: alpha is there; shared, on both hosts, goes to
    # two, where nothing has to be unloaded for it.
    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            client = gw.openai()
            await client.completions.create(model="alpha", prompt="x", max_tokens=1)
            await client.completions.create(model="shared", prompt="x", max_tokens=1)
            await client.close()
            served = {(s.host_name, Path(s.model_path).name) for s in await gw.core.status()
                      if s.state is ServerState.READY}  # fmt: skip
            assert served == {("one", "alpha.gguf"), ("two", "shared.gguf")}

    run(scenario())


def test_a_removed_node_s_servers_are_lost_and_the_next_request_goes_elsewhere(
    lab: Lab, tmp_path: Path
) -> None:
    three = lab.cluster.add_node(num_cpus=1, env_vars=node_env(
        lab.build, lab.root, "three", "solo", "only3",
        LLAMASWITCH_READY_TIMEOUT_S="60"))  # fmt: skip
    write_tiny_model(lab.root / "two" / "models" / "solo.gguf", name="solo", seed=1)

    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            await until(lambda: len(gw.core.gateway.hosts()) == 3, 60, "host three")  # type: ignore[attr-defined]
            client = gw.openai()
            # Two has beta loaded, three nothing: solo goes to three (most free memory).
            await client.completions.create(model="beta", prompt="x", max_tokens=1)
            await client.completions.create(model="solo", prompt="x", max_tokens=1)
            solo = [s for s in await gw.core.status() if Path(s.model_path).name == "solo.gguf"]
            assert [s.host_name for s in solo] == ["three"]
            lab.cluster.remove_node(three)
            await until(lambda: gw.of("host", "lost"), 30, "host three lost")
            hosts = await _hosts(gw)
            assert hosts["three"]["state"] == "lost"
            assert [s["state"] for s in hosts["three"]["servers"]] == ["lost"]
            began = time.monotonic()
            answer = await client.completions.create(model="solo", prompt="x", max_tokens=1)
            assert answer.choices
            solo = [s for s in await gw.core.status() if Path(s.model_path).name == "solo.gguf"]
            assert {(s.host_name, s.state) for s in solo} == {
                ("three", ServerState.LOST),
                ("two", ServerState.READY),
            }
            assert time.monotonic() - began < 60
            # A model only the lost host had: 503, naming the host, not "not found".
            with pytest.raises(openai.APIStatusError) as refused:
                await client.completions.create(model="only3", prompt="x", max_tokens=1)
            assert refused.value.status_code == 503
            assert "host three left the cluster" in str(refused.value)
            await client.close()

    run(scenario())
    # The node's llama-server went with it (its agent was its parent).
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "llama-server":
            assert "three" not in " ".join(proc.info["cmdline"] or []), proc.info["cmdline"]


_HEAD = """
import asyncio, json, sys
from llamaswitch import AsyncLlamaSwitch, Settings

async def main():
    values = json.loads(sys.argv[1])
    async with AsyncLlamaSwitch(Settings(**values)) as ls:
        status = await ls.gateway.ensure("beta")
        print(json.dumps({"pid": status.process_id, "port": status.port,
                          "host": status.host_name}), flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


def _head_process(lab: Lab, tmp_path: Path, grace_s: float) -> tuple[Any, dict[str, Any]]:
    """A head in a process of its own that serves beta (on host two); what it printed."""
    settings = lab.head_settings(tmp_path / "killed")
    values = {
        "models_dir": str(settings.models_dir), "state_dir": str(settings.state_dir),
        "server_port": settings.server_port, "model_ports": list(settings.model_ports),
        "default_model_port": settings.default_model_port, "cluster": "ray",
        "cluster_grace_s": grace_s, "llama_server_path": str(lab.build.server.path),
    }  # fmt: skip
    head = subprocess.Popen([sys.executable, "-c", _HEAD, json.dumps(values)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert head.stdout is not None
    line = head.stdout.readline()
    assert line, "the head printed nothing"
    return head, json.loads(line)


def test_a_killed_head_s_servers_stop_after_the_grace_period(lab: Lab, tmp_path: Path) -> None:
    head, served = _head_process(lab, tmp_path, grace_s=3.0)
    server = psutil.Process(served["pid"])
    assert served["host"] == "two"
    head.kill()
    head.wait()
    killed_at = time.monotonic()
    time.sleep(1.0)
    assert server.is_running(), "stopped before the grace period was over"
    server.wait(timeout=30)  # the agent stopped it
    waited = time.monotonic() - killed_at
    assert 2.0 <= waited < 30, waited


def test_a_head_that_restarts_takes_over_the_hosts_and_their_servers(
    lab: Lab, tmp_path: Path
) -> None:
    head, served = _head_process(lab, tmp_path, grace_s=60.0)
    head.kill()
    head.wait()

    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            beta = [s for s in await gw.core.status() if Path(s.model_path).name == "beta.gguf"]
            assert [(s.host_name, s.process_id, s.state) for s in beta] == [
                ("two", served["pid"], ServerState.READY)
            ]
            client = gw.openai()
            await client.completions.create(model="beta", prompt="x", max_tokens=1)
            await client.close()
            assert gw.of("gateway", "model_loading") == []  # served by the server it found
            ready = gw.of("gateway", "model_ready")
            assert [(e.data["port"], e.data["adopted"]) for e in ready] == [(served["port"], True)]
            # Started for a gateway, it is the new head's own: unloaded when room is needed.
            models = (await (await gw.client.get("/v1/models")).json())["data"]
            assert next(m for m in models if m["id"] == "beta")["owned"] is True

    run(scenario())
    # The head that took over stopped everything when it closed.
    assert not psutil.pid_exists(served["pid"]) or psutil.Process(served["pid"]).status() == (
        psutil.STATUS_ZOMBIE
    )


SMALL_BENCH = {"n_prompt": 8, "n_gen": 4, "threads": 1, "repetitions": 1}


def test_the_admin_routes_act_on_the_host_they_name(lab: Lab, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            answer = await gw.client.post("/api/v1/model/start?wait=true", json={
                "model_path": "beta.gguf", "config": {"ctx_size": 512}, "host": "two"})  # fmt: skip
            assert answer.status == 200, await answer.text()
            started = (await answer.json())["data"]
            assert (started["host_name"], started["state"]) == ("two", "ready")
            port = started["port"]
            one = await gw.client.get("/api/v1/model/status?host=one")
            assert (await one.json())["data"] == []
            logs = await gw.client.get(f"/api/v1/model/logs?port={port}&host=two&lines=50")
            assert any("llama" in line for line in (await logs.json())["data"])
            # Its key, which only the head tells, opens the server to a client that has it.
            asked = await gw.client.get(f"/api/v1/model/key?port={port}&host=two")
            key = (await asked.json())["data"]["api_key"]
            assert key
            auth = {"Authorization": f"Bearer {key}"}
            async with gw.client.session.get(f"{started['url']}/v1/models", headers=auth) as r:
                assert r.status == 200
            # The gateway uses the server an admin started there, as on one machine.
            client = gw.openai()
            await client.completions.create(model="beta", prompt="x", max_tokens=1)
            await client.close()
            assert gw.of("gateway", "model_loading") == []
            stop = await gw.client.post("/api/v1/model/stop", json={"port": port, "host": "two"})
            assert [s["state"] for s in (await stop.json())["data"]] == ["stopped"]
            # A switch on host two takes that host's default model port.
            body = {"model_path": "shared.gguf", "config": {"ctx_size": 512}, "host": "two"}
            switched = await gw.client.post("/api/v1/model/switch?wait=true", json=body)
            assert switched.status == 200, await switched.text()
            on_two = (await switched.json())["data"]
            env_two = lab.envs["two"]
            assert on_two["port"] == int(env_two["LLAMASWITCH_DEFAULT_MODEL_PORT"])
            assert on_two["host_name"] == "two"
            await gw.client.post("/api/v1/model/stop", json={"port": on_two["port"], "host": "two"})
            unknown = await gw.client.get("/api/v1/model/status?host=nowhere")
            assert unknown.status == 404
            refused = await unknown.json()
            assert refused["data"]["code"] == "host_not_found"
            assert refused["data"]["hosts"] == ["one", "two"]
            assert "no host named 'nowhere'" in refused["error"]

    run(scenario())


def test_a_benchmark_runs_on_every_host_that_has_the_model_and_compares(
    lab: Lab, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            answer = await gw.client.post("/api/v1/benchmark", json={
                "model_path": "shared.gguf", "config": SMALL_BENCH, "host": "*"})  # fmt: skip
            assert answer.status == 202, await answer.text()
            tasks = (await answer.json())["data"]
            assert len(tasks) == 2
            done = [await gw.core.wait_benchmark(t["id"], timeout_s=120) for t in tasks]
            assert {t.state for t in done} == {"completed"}
            assert sorted(t.host["name"] for t in done) == ["one", "two"]
            assert all(t.source.startswith("host:") and t.results for t in done)
            # Kept in the head's history: listed and compared like any task.
            listed = {t.id for t in await gw.core.list_benchmarks(model="shared.gguf")}
            assert {t.id for t in done} <= listed
            comparison = await gw.core.compare_benchmarks([t.id for t in done])
            assert comparison.rows
            assert all(len(row.cells) == 2 for row in comparison.rows)
            # A task on a host is cancelled there, and kept here as cancelled.
            long = {"n_prompt": 512, "n_gen": 128, "threads": 1, "repetitions": 50}
            answer = await gw.client.post("/api/v1/benchmark", json={
                "model_path": "beta.gguf", "config": long, "host": "two"})  # fmt: skip
            task_id = (await answer.json())["data"]["id"]
            cancel = await gw.client.post(f"/api/v1/benchmark/cancel?task_id={task_id}")
            assert cancel.status == 200, await cancel.text()
            ended = await gw.core.wait_benchmark(task_id, timeout_s=60)
            assert (ended.state, ended.host["name"]) == ("cancelled", "two")

    run(scenario())


def test_a_single_machine_knows_only_its_own_host_name(tmp_path: Path) -> None:
    from llamaswitch import AsyncLlamaSwitch

    settings = make_settings(None, tmp_path, tmp_path / "state", host_name="solo")

    async def scenario() -> None:
        async with AsyncLlamaSwitch(settings) as ls:
            assert await ls.status(host="solo") == []
            with pytest.raises(Exception, match="no host named 'elsewhere'") as raised:
                await ls.status(host="elsewhere")
            assert type(raised.value).__name__ == "HostNotFoundError"
            assert await ls.hosts() == []

    run(scenario())


def test_the_dashboard_shows_each_host_s_servers_and_acts_on_them(lab: Lab, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    chromium = Path(os.environ.get("LLAMASWITCH_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        if IN_CI:
            pytest.fail(f"CI=true and no Chromium at {chromium}", pytrace=False)
        pytest.skip(f"no Chromium at {chromium}")
    from llamaswitch.testing import HEADLESS_CHROMIUM_ARGS

    async def scenario() -> None:
        async with running(lab.head_settings(tmp_path)) as gw:
            ports = {}
            for host, model in (("one", "alpha"), ("two", "beta")):
                answer = await gw.client.post("/api/v1/model/start?wait=true", json={
                    "model_path": f"{model}.gguf", "config": {"ctx_size": 512},
                    "host": host})  # fmt: skip
                ports[host] = (await answer.json())["data"]["port"]
            async with playwright.async_playwright() as driver:
                browser = await driver.chromium.launch(
                    executable_path=str(chromium), args=list(HEADLESS_CHROMIUM_ARGS)
                )
                try:
                    await _use_the_dashboard(await browser.new_page(), gw.url, ports)
                finally:
                    await browser.close()
            left = {(s.host_name, s.state) for s in await gw.core.status()}
            assert ("two", ServerState.READY) not in left
            assert ("one", ServerState.READY) in left

    run(scenario())


async def _use_the_dashboard(page: Any, url: str, ports: dict[str, int]) -> None:
    """Each host's row, host two's logs, and a stop of host two's server, as a user would."""
    wait = {"timeout": 15_000}
    await page.goto(f"{url}/ui/#/overview")
    await page.wait_for_selector("main[data-ready='overview']", **wait)
    two, one = (page.locator(f"#servers-table tr[data-server='{h}:{ports[h]}']")
                for h in ("two", "one"))  # fmt: skip
    await two.wait_for(**wait)
    assert "host two" in await two.inner_text()
    assert "host one" in await one.inner_text()
    # Its logs, from its host: beta's own output (its model path).
    name = f"beta.gguf on port {ports['two']} on host two"
    await two.get_by_role("link", name=f"Logs of {name}").click()
    await page.wait_for_selector("main[data-ready='logs']", **wait)
    assert await page.locator("#log-server").input_value() == f"two:{ports['two']}"
    await page.wait_for_function(
        "() => document.querySelector('#log-output').textContent"
        ".includes('two/models/beta.gguf')", **wait)  # fmt: skip
    # Stopped from the page: the server on host two, not one's.
    await page.goto(f"{url}/ui/#/overview")
    await page.wait_for_selector("main[data-ready='overview']", **wait)
    await page.get_by_role("button", name=f"Stop {name}").click()
    await page.wait_for_function(
        "() => document.body.innerText.includes('Stopped beta.gguf')", **wait)  # fmt: skip
