"""``llamaswitch serve``: run the REST API (``llamaswitch serve --demo`` for a first try)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamaswitch._cli._common import EXIT_MISSING, EXIT_OK, api_port, load_settings
from llamaswitch._settings import Settings

__all__ = ["DEMO_PRESETS", "curl_examples", "gateway_examples", "register"]

_LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any) -> None:
    """Add the ``serve`` command."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the REST API (the seed's routes, events, metrics, OpenAPI document)",
        description="Serve the llamaswitch REST API until Ctrl-C or SIGTERM; on exit every "
        "model server it started is stopped and running benchmarks are marked interrupted. "
        "With --demo it first creates a models folder with two tiny models and prints "
        "curl lines to try.",
    )
    parser.add_argument("--host", help="address to bind (default: LLAMASWITCH_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=api_port, help="port to bind (default: SERVER_PORT, 8080)")
    parser.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info",
        help="how much the service logs on stderr (info: a line per event; default info)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without LLAMASWITCH_API_KEY (anyone who can reach "
        "it can start processes)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ray[://ADDRESS]",
        help="serve as the head of a Ray cluster (docs/cluster.md): ray (this machine's "
        "cluster, or RAY_ADDRESS) or ray://HOST:PORT (default: LLAMASWITCH_CLUSTER, none)",
    )
    parser.add_argument(
        "--demo",
        nargs="?",
        const="",
        metavar="DIR",
        help="create DIR (default: --models-dir, else <state dir>/demo-models) with two tiny "
        "demo models if they are absent, serve it, and print curl lines to try",
    )
    parser.set_defaults(handler=_run)


def curl_examples(url: str, *, model: str, model_port: int, api_key: bool) -> list[str]:
    """The seed's curl examples, for this service's URL, a catalog model and a free port."""
    auth = ' -H "Authorization: Bearer $LLAMASWITCH_API_KEY"' if api_key else ""
    post = f'curl -X POST{auth} -H "Content-Type: application/json"'
    switch = {
        "model_path": model,
        "config": {"port": model_port, "threads": 4, "ctx_size": 2048, "batch_size": 512},
    }
    bench = {
        "model_path": model,
        "config": {
            "n_prompt": 512,
            "n_gen": 128,
            "threads": 32,
            "repetitions": 5,
            "output": "md",
            "progress": 1,
        },
    }
    return [
        f"curl{auth} {url}/api/v1/models",
        f"{post} {url}/api/v1/model/switch -d '{json.dumps(switch)}'",
        f"curl{auth} {url}/api/v1/model/status",
        f"{post} {url}/api/v1/benchmark -d '{json.dumps(bench)}'",
        f'curl{auth} "{url}/api/v1/benchmark/status?task_id=<task_id>"',
        f"curl{auth} -N {url}/api/v1/events",
        f"curl -X POST{auth} {url}/api/v1/model/stop",
    ]


def _reachable(url: str) -> str:
    # A wildcard bind is reached through loopback from this machine.
    for wildcard in ("//0.0.0.0:", "//[::]:"):
        url = url.replace(wildcard, "//127.0.0.1:")
    return url


def _demo_model() -> str:
    from llamaswitch.testing import DEMO_MODELS

    return next(iter(DEMO_MODELS))


#: Written beside the demo models when the folder has no presets: a preset that names a
#: model the way OpenAI clients do, and a context that fits a chat on every slot.
DEMO_PRESETS = """\
# llamaswitch presets (docs/gateway.md): what the gateway's clients may call a model.
[defaults]
ctx_size = 2048

[models.chat]
file = "tiny-chat.gguf"
aliases = ["gpt-4o-mini"]
"""


def gateway_examples(url: str, *, model: str, api_key: bool) -> list[str]:
    """A curl line for the gateway's /v1/chat/completions and a three-line ``openai``
    snippet (the model is loaded on demand by the first request)."""
    auth = ' -H "Authorization: Bearer $LLAMASWITCH_API_KEY"' if api_key else ""
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    key = 'os.environ["LLAMASWITCH_API_KEY"]' if api_key else '"unused"'
    return [
        f'curl{auth} -H "Content-Type: application/json" {url}/v1/chat/completions '
        f"-d '{json.dumps(body)}'",
        "from openai import OpenAI",
        f'client = OpenAI(base_url="{url}/v1", api_key={key})',
        f'print(client.chat.completions.create(model="{model}", messages=[{{"role": '
        '"user", "content": "Hello"}]).choices[0].message.content)',
    ]


def _demo_announce(settings: Settings) -> Callable[[str], None]:
    def announce(url: str) -> None:
        url = _reachable(url)
        keyed = settings.api_key is not None
        curl, *snippet = gateway_examples(url, model="chat", api_key=keyed)
        lines = [
            f"llamaswitch: serving the demo models in {settings.models_dir} on {url}",
            f"Dashboard: {url}/",
            "OpenAI-compatible gateway (the model loads on the first request):",
            f"  {curl}",
            "  Python (pip install openai):",
            *(f"    {line}" for line in snippet),
            "The seed's REST API (Ctrl-C stops the service and every model server it "
            "started):",
            *(f"  {line}" for line in curl_examples(
                url, model=_demo_model(), model_port=settings.model_port, api_key=keyed)),
        ]  # fmt: skip
        print("\n".join(lines), flush=True)

    return announce


def _serve_announce(url: str) -> None:
    url = _reachable(url)
    print(f"llamaswitch: serving on {url} (dashboard: {url}/, OpenAI-compatible gateway: "
          f"{url}/v1, API document: {url}/api/v1/openapi.json; Ctrl-C to stop)",
          flush=True)  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    try:
        from llamaswitch_http import run_server
    except ImportError as exc:
        print(
            f"llamaswitch: `serve` needs the http extra (missing: {exc.name}); install it "
            "with: pip install 'llamaswitch[http]'",
            file=sys.stderr,
        )
        return EXIT_MISSING
    overrides: dict[str, Any] = {"server_host": args.host, "server_port": args.port,
                                 "cluster": args.cluster}  # fmt: skip
    announce: Callable[[str], None] = _serve_announce
    if args.demo is not None:
        folder = args.demo or args.models_dir
        if not folder:
            folder = load_settings(args).state_dir / "demo-models"
        from llamaswitch.testing import write_demo_models

        write_demo_models(folder)
        presets = Path(folder) / "llamaswitch.toml"
        if not presets.exists():
            presets.write_text(DEMO_PRESETS, encoding="utf-8")
        args = argparse.Namespace(**{**vars(args), "models_dir": str(folder)})
        settings = load_settings(args, **overrides)
        announce = _demo_announce(settings)
    else:
        settings = load_settings(args, **overrides)
    # Unhandled errors are logged with the trace id their 500 response carries; at info,
    # each event of the core is a line.
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    run_server(settings, insecure=args.insecure, announce=announce)
    return EXIT_OK
