"""``llamaswitch models``: the GGUF models in the models folder, and what each one is.

Examples::

    llamaswitch models
    llamaswitch --models-dir ~/models models --json
    llamaswitch models --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from llamaswitch._cli._client import add_backend_options, guarded, open_backend, print_json
from llamaswitch._cli._common import EXIT_OK
from llamaswitch._cli._render import console, human_bytes, human_count, text

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` command."""
    parser = sub.add_parser(
        "models",
        help="list the GGUF models in the models folder",
        description="List the GGUF models in the models folder (subfolders included): file, "
        "architecture, parameters, quantization, context length, size. A file that is not "
        "a usable GGUF is listed with the reason.",
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the catalog as JSON")
    add_backend_options(parser)
    parser.set_defaults(handler=guarded(_run))


def _run(args: argparse.Namespace) -> int:
    with open_backend(args) as backend:
        models = backend.list_models()
        where = backend.where
    if args.json:
        print_json(models)
        return EXIT_OK
    out = console()
    if not models:
        out.print(f"no GGUF models found ({where}); see `llamaswitch doctor`")
        return EXIT_OK
    table = Table(title=f"{len(models)} GGUF model{'s' if len(models) != 1 else ''}")
    table.add_column("model", overflow="fold")
    table.add_column("arch")
    table.add_column("params", justify="right")
    table.add_column("quant")
    table.add_column("ctx", justify="right")
    table.add_column("size", justify="right")
    table.add_column("notes", overflow="fold")
    for model in models:
        table.add_row(
            text(model.get("relative_path") or model.get("name")),
            text(model.get("architecture")),
            human_count(model.get("parameter_count")),
            text(model.get("quantization")),
            text(model.get("context_length")),
            human_bytes(model.get("size")),
            _notes(model),
        )
    out.print(table)
    return EXIT_OK


def _notes(model: dict[str, Any]) -> str:
    notes = []
    if model.get("error"):
        notes.append(f"[red]unusable: {escape(str(model['error']))}[/]")
    shards = model.get("shard_count")
    if isinstance(shards, int) and shards > 1:
        notes.append(f"{shards} shards")
    if model.get("projector_path"):
        notes.append("projector")
    return "; ".join(notes)
