"""``llamaswitch models``: the GGUF models in the models folder, and what each one is.

Examples::

    llamaswitch models
    llamaswitch --models-dir ~/models models --json
    llamaswitch models --url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from llamaswitch._catalog import ModelInfo
from llamaswitch._cli._api import add_backend_options, guarded, open_api, print_json, where
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
    with open_api(args) as api:
        models = api.list_models()
        place = where(api)
    if args.json:
        print_json(models)
        return EXIT_OK
    out = console()
    if not models:
        out.print(f"no GGUF models found ({place}); see `llamaswitch doctor`")
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
            escape(model.relative_path or model.name),
            escape(text(model.architecture)),
            human_count(model.parameter_count),
            escape(text(model.quantization)),
            text(model.context_length),
            human_bytes(model.size),
            _notes(model),
        )
    out.print(table)
    return EXIT_OK


def _notes(model: ModelInfo) -> str:
    notes = []
    if model.error:
        notes.append(f"[red]unusable: {escape(model.error)}[/]")
    if model.shard_count > 1:
        notes.append(f"{model.shard_count} shards")
    if model.projector_path:
        notes.append("projector")
    return "; ".join(notes)
