"""The field reference pages of ``docs/``, generated from the one vocabulary.

- ``docs/model_params.md``: every :class:`~llamaswitch.ServerConfig` field;
- ``docs/benchmark_params.md``: every :class:`~llamaswitch.BenchConfig` field;
- ``docs/configuration.md``: its settings table and the ``env`` allow-list, between
  ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` markers (the prose around
  them is written by hand).

``python -m llamaswitch._reference`` rewrites them; ``--check`` exits 1 when a page is
stale (a test runs the check, so docs cannot drift from the code).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from llamaswitch._settings import Settings
from llamaswitch._vocabulary import markdown_table, specs
from llamaswitch.bench.config import BenchConfig
from llamaswitch.servers.config import ENV_NAMES, ENV_PREFIXES, ServerConfig

__all__ = ["render", "stale", "write"]

_MARKER: Final = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def _settings_table() -> str:
    lines = ["| key | `Settings` field | default | meaning |", "|---|---|---|---|"]
    for name, setting in specs(Settings).items():
        default = setting.default_doc or f"`{_default(name)}`"
        lines.append(f"| `{setting.env}` | `{name}` | {default} | {setting.doc} |")
    return "\n".join(lines)


def _default(name: str) -> str:
    value = getattr(Settings(), name)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_allow_list() -> str:
    prefixes = ", ".join(f"`{p}*`" for p in ENV_PREFIXES)
    names = ", ".join(f"`{n}`" for n in sorted(ENV_NAMES))
    return (
        f"A server's `env` accepts only variables known to be safe for llama.cpp: the "
        f"prefixes {prefixes}, and {names}. A name that carries a path word (`PATH`, `DIR`, "
        "`FILE`, `LIB`, `LIBRARIES`, `PRELOAD`, `OUTPUT`, `URL`...) is refused whatever its "
        "prefix: it would make the server read, write or load a file chosen by whoever sends "
        "the request. `LLAMA_ARG_*` variables are llama.cpp's twins of its flags: accepted "
        "when that flag would be accepted in `extra_args`, and checked against the binary's "
        "own `--help`. Everything else (`LD_PRELOAD`, `LD_DEBUG`, `GCONV_PATH`, `PATH`...) "
        "is refused and named."
    )


_FRAGMENTS: Final[Mapping[str, Callable[[], str]]] = {
    "settings": _settings_table,
    "env-allow-list": _env_allow_list,
}

_MODEL_PARAMS: Final = """# Model server parameters (`ServerConfig`)

<!-- Generated from the field declarations of ServerConfig: run
     `python -m llamaswitch._reference` after changing them. -->

The `config` object of `POST /api/v1/model/switch` and `/start`, the keyword arguments of
`ServerConfig(...)`, and the options of `llamaswitch switch` / `start` are the same
fields. Every field is optional: unset, llama.cpp's own default applies. A config is
checked when it is built; every bad field is named at once. The `llama.cpp` column is the
flag each field becomes, through the binary's own `--help` (legacy and current builds spell
some differently). `extra_args` may not carry a flag that a field here sets: set the field.

{table}
"""

_BENCH_PARAMS: Final = """# Benchmark parameters (`BenchConfig`)

<!-- Generated from the field declarations of BenchConfig: run
     `python -m llamaswitch._reference` after changing them. -->

The `config` object of `POST /api/v1/benchmark` (the seed's keys and newer builds'
options), the keyword arguments of `BenchConfig(...)`, and the options of
`llamaswitch bench` are the same fields. Every field is optional; `""` and `null` mean
unset (llama-bench's default). A field that sweeps takes one value or a list: llama-bench
runs every combination (at most 10,000 tests per task). On the command line a sweep is a
comma list (`--threads 1,2,4`); fields whose values hold commas themselves repeat instead
(`-pg 512,128 -pg 1024,256`).

{table}
"""


def render(root: Path) -> dict[Path, str]:
    """Every generated page, by its path under ``root``, as it should read."""
    pages = {
        root / "docs" / "model_params.md": _MODEL_PARAMS.format(
            table=markdown_table(ServerConfig)
        ),
        root / "docs" / "benchmark_params.md": _BENCH_PARAMS.format(
            table=markdown_table(BenchConfig)
        ),
    }
    configuration = root / "docs" / "configuration.md"
    text = configuration.read_text(encoding="utf-8")
    pages[configuration] = _MARKER.sub(
        lambda m: f"{m.group(1)}{_FRAGMENTS[m.group('name')]()}\n{m.group(4)}", text
    )
    return pages


def stale(root: Path) -> list[Path]:
    """The pages whose text differs from what the code says."""
    return [
        path
        for path, text in render(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write(root: Path) -> list[Path]:
    """Rewrite the stale pages; returns them."""
    changed = stale(root)
    pages = render(root)
    for path in changed:
        path.write_text(pages[path], encoding="utf-8")
    return changed


def main(argv: list[str]) -> int:
    """``python -m llamaswitch._reference [--check] [ROOT]``."""
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    root = Path(rest[0]) if rest else Path.cwd()
    paths = stale(root) if check else write(root)
    for path in paths:
        print(f"{'stale' if check else 'wrote'}: {path}")
    return 1 if check and paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
