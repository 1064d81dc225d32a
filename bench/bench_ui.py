"""How fast the dashboard loads with 1,000 models and 1,000 benchmark tasks, and how big it is.

Goals (from the issue): every page interactive in under 1 s here; all assets under
300 KB gzipped.

    .venv/bin/python bench/bench_ui.py [--models 1000] [--tasks 1000] [--loads 5]

What runs, all on loopback:

- ``llamaswitch serve`` (the real command) on a folder of ``--models`` tiny models (one
  real model copied, as bench_catalog.py does), llama.cpp found as ``serve`` finds it;
- one real llama-bench run through ``POST /api/v1/benchmark`` (JSON output), whose output
  is then imported ``--tasks - 1`` times through ``POST /api/v1/benchmarks/import``, so
  the history holds ``--tasks`` tasks; then one real tune of four trials, so the Tune
  page lists one;
- Debian's Chromium under Playwright, as the browser tests start it. Each load is a fresh
  browser context (an empty cache: every asset is fetched), on a fresh document.

Per page, from the browser's Performance API, the median over ``--loads`` loads of:
first contentful paint (``paint`` entries); time to interactive: the page's own mark
``llamaswitch:interactive:NAME``, set once its first data is in the document (the
catalog with the gateway's memory figures, the history...), measured from the
navigation's start; and the largest contentful paint once the frame after that has been
drawn (for the Models page: the 1,000 rows laid out and painted, which the mark does not
wait for). Also the bytes the browser transferred for a cold load of each page
(``transferSize`` of the navigation and every resource, headers included), the raw and
gzipped size of every asset the package ships, and two interactions at this scale: a
keystroke in the models' search (to the next frame) and showing all 1,000 tasks of the
history.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from llamaswitch.testing import HEADLESS_CHROMIUM_ARGS, write_tiny_model
from llamaswitch_http._ui import PAGES

ROOT = Path(__file__).resolve().parents[1]
UI_ROOT = ROOT / "src" / "llamaswitch_http" / "ui"
CHROMIUM = os.environ.get("LLAMASWITCH_CHROMIUM", "/usr/bin/chromium")
INTERACTIVE_GOAL_MS = 1000.0
GZIP_GOAL_BYTES = 300 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, method: str = "GET", body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    # S310: every URL here is http://127.0.0.1, built by this script.
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=120) as response:  # noqa: S310
        return json.loads(response.read())


def build_models(folder: Path, count: int) -> None:
    """``count`` tiny models (narrow weights: the folder stays near 40 MB)."""
    source = write_tiny_model(
        folder / "model-0000.gguf", name="bench", embedding_length=16, feed_forward_length=16
    )
    for index in range(1, count):
        shutil.copyfile(source, folder / f"model-{index:04d}.gguf")


def fill_history(api: str, count: int) -> None:
    """One real llama-bench run, then its output imported until there are ``count`` tasks."""
    config = {"n_prompt": 16, "n_gen": 8, "repetitions": 2, "threads": 1, "output": "json"}
    task = request(f"{api}/benchmark", "POST", {"model_path": "model-0000.gguf", "config": config})
    task_id = task["data"]["id"]
    deadline = time.monotonic() + 120
    while True:
        status = request(f"{api}/benchmark/status?task_id={task_id}")["data"]
        if status["state"] not in {"queued", "running"}:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark did not finish in 120 s")
        time.sleep(0.1)
    if status["state"] != "completed":
        raise SystemExit(f"the benchmark ended {status['state']}: {status['error']}")
    for _ in range(count - 1):
        request(f"{api}/benchmarks/import", "POST", {"text": status["output"], "format": "json"})


def run_tune(api: str) -> str:
    """One real tune of 2 x 2 points, so the Tune page lists a tune; its id."""
    body = {
        "model_path": "model-0000.gguf",
        "space": {"threads": [1, 2], "batch_size": [32, 64]},
        "objective": {"n_prompt": 16, "n_gen": 8},
        "budget": 4,
        "repetitions": 2,
        "max_repetitions": 2,
        "save_preset": False,
    }
    tune_id = str(request(f"{api}/tune", "POST", body)["data"]["id"])
    deadline = time.monotonic() + 120
    while (state := request(f"{api}/tune/status?tune_id={tune_id}")["data"]["state"]) == "running":
        if time.monotonic() > deadline:
            raise SystemExit("the tune did not finish in 120 s")
        time.sleep(0.1)
    if state != "completed":
        raise SystemExit(f"the tune ended {state}")
    return tune_id


def asset_sizes() -> tuple[int, int, int]:
    """(files, raw bytes, gzipped bytes) of everything the dashboard can load."""
    files = raw = packed = 0
    for path in sorted(UI_ROOT.rglob("*")):
        if path.is_file() and path.suffix in {".html", ".js", ".css", ".svg"}:
            body = path.read_bytes()
            files += 1
            raw += len(body)
            packed += len(gzip.compress(body, compresslevel=9, mtime=0))
    return files, raw, packed


def measure_load(browser: Any, url: str, name: str) -> dict[str, float]:
    """One cold load of a page: FCP, interactive, largest paint, bytes transferred."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{url}/ui/#/{name}")
        page.wait_for_selector(f"main[data-ready='{name}']", timeout=30_000)
        return dict(
            page.evaluate(
                """async name => {
                  // The largest paint once the page has drawn the frame after its data.
                  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
                  const lcp = await new Promise(resolve => {
                    new PerformanceObserver(list => {
                      const entries = list.getEntries();
                      resolve(entries[entries.length - 1].startTime);
                    }).observe({ type: 'largest-contentful-paint', buffered: true });
                    setTimeout(() => resolve(NaN), 1000);
                  });
                  const nav = performance.getEntriesByType('navigation')[0];
                  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                  const ready = performance.getEntriesByName('llamaswitch:interactive:' + name)[0];
                  const resources = performance.getEntriesByType('resource');
                  const assets = resources.filter(r => r.name.includes('/ui/'));
                  return {
                    fcp_ms: fcp ? fcp.startTime : NaN,
                    lcp_ms: lcp,
                    interactive_ms: ready ? ready.startTime : NaN,
                    transferred: nav.transferSize + assets.reduce((s, r) => s + r.transferSize, 0),
                    api_transferred: resources.filter(r => r.name.includes('/api/'))
                                              .reduce((s, r) => s + r.transferSize, 0),
                  };
                }""",
                name,
            )
        )
    finally:
        context.close()


def measure_search(browser: Any, url: str, loads: int) -> float:
    """Median ms from a keystroke in the models' search to the next frame, 1,000 rows."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{url}/ui/#/models")
        page.wait_for_selector("main[data-ready='models']", timeout=30_000)
        keystroke = """text => new Promise(resolve => {
            const input = document.getElementById('model-search');
            const start = performance.now();
            input.value = text;
            input.dispatchEvent(new Event('input'));
            requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - start)));
        })"""
        texts = ["m", "mo", "model-01", "model-012", "", "9", "99", ""][: max(loads, 3) + 3]
        times = [float(page.evaluate(keystroke, text)) for text in texts]
        return statistics.median(times)
    finally:
        context.close()


def measure_full_history(browser: Any, url: str, loads: int) -> float:
    """Median ms to fetch and show 1,000 tasks of the history (the "At most" choice)."""
    times: list[float] = []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(f"{url}/ui/#/benchmarks")
            page.wait_for_selector("main[data-ready='benchmarks']", timeout=30_000)
            start = page.evaluate("performance.now()")
            page.select_option("#filter-limit", "1000")
            page.wait_for_function(
                "() => document.querySelectorAll('#history-table tbody tr').length === 1000",
                timeout=30_000,
            )
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            times.append(float(page.evaluate("performance.now()")) - float(start))
        finally:
            context.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    models = workdir / "models"
    models.mkdir()
    build_models(models, args.models)
    port = free_port()
    low = 21000 + port % 5000
    env = {
        **os.environ,
        "MODELS_DIR": str(models),
        "LLAMASWITCH_STATE_DIR": str(workdir / "state"),
        "LLAMASWITCH_MODEL_PORTS": f"{low}-{low + 9}",
    }
    env.pop("LLAMASWITCH_API_KEY", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "llamaswitch", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    api = f"{url}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request(f"{api}/health")
                break
            except OSError:
                if service.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("llamaswitch serve did not come up") from None
                time.sleep(0.05)
        started = time.perf_counter()
        fill_history(api, args.tasks)
        run_tune(api)
        listed = len(request(f"{api}/models")["data"])
        history = len(request(f"{api}/benchmarks?limit=1000")["data"])
        # One server, so Overview and Logs have a row and output to show.
        server = request(f"{api}/model/start?wait=true", "POST", {"model_path": "model-0000.gguf"})
        print(
            f"catalog: {listed} models; history: {history} tasks and 1 tune (filled in "
            f"{time.perf_counter() - started:.1f} s); 1 model server on port "
            f"{server['data']['port']}; {args.loads} cold loads per page; {os.cpu_count()} CPUs"
        )

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=list(HEADLESS_CHROMIUM_ARGS)
            )
            try:
                measure_load(browser, url, "overview")  # warms the service's asset cache
                print()
                print(
                    f"{'page':11s} {'first paint':>12s} {'interactive':>12s} "
                    f"{'largest paint':>14s} {'transferred':>12s}"
                )
                worst = 0.0
                transferred: dict[str, float] = {}
                for name in PAGES:
                    loads = [measure_load(browser, url, name) for _ in range(args.loads)]
                    fcp = statistics.median(x["fcp_ms"] for x in loads)
                    ready = statistics.median(x["interactive_ms"] for x in loads)
                    lcp = statistics.median(x["lcp_ms"] for x in loads)
                    transferred[name] = statistics.median(x["transferred"] for x in loads)
                    worst = max(worst, ready)
                    verdict = "ok" if ready < INTERACTIVE_GOAL_MS else "MISSED"
                    print(
                        f"{name:11s} {fcp:9.0f} ms {ready:9.0f} ms {lcp:11.0f} ms "
                        f"{transferred[name] / 1024:8.1f} KiB   "
                        f"(goal: interactive < {INTERACTIVE_GOAL_MS:.0f} ms: {verdict})"
                    )
                search = measure_search(browser, url, args.loads)
                full = measure_full_history(browser, url, max(3, args.loads // 2))
            finally:
                browser.close()
        files, raw, packed = asset_sizes()
        print()
        print(f"slowest page interactive: {worst:.0f} ms (goal < {INTERACTIVE_GOAL_MS:.0f} ms)")
        print(
            f"assets shipped: {files} files, {raw / 1024:.1f} KiB raw, {packed / 1024:.1f} KiB "
            f"gzipped (goal < {GZIP_GOAL_BYTES / 1024:.0f} KB gzipped: "
            f"{'ok' if packed < GZIP_GOAL_BYTES else 'MISSED'})"
        )
        print(
            f"most transferred by one cold page load (headers included): "
            f"{max(transferred.values()) / 1024:.1f} KiB"
        )
        print(
            f"models search, keystroke to next frame ({args.models} rows): median {search:.1f} ms"
        )
        print(f"history: showing 1000 tasks (fetch + render): median {full:.0f} ms")
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
