"""The field reference pages of ``docs/``, generated from the one vocabulary.

- ``docs/model_params.md``: every :class:`~llamaswitch.ServerConfig` field;
- ``docs/benchmark_params.md``: every :class:`~llamaswitch.BenchConfig` field;
- marked sections of ``docs/configuration.md`` (the settings table, the ``env``
  allow-list), ``docs/cli.md`` (the option tables of ``switch``/``start`` and ``bench``,
  the exit codes), ``docs/rest.md`` (the error statuses) and ``docs/api.md`` (the
  exception classes) and ``docs/gateway.md`` (its settings, preset keys and errors), between
  ``<!-- generated: NAME -->`` and ``<!-- end generated -->`` markers (the prose around
  them is written by hand).

``python -m llamaswitch._reference`` rewrites them; ``--check`` exits 1 when a page is
stale (a test runs the check, so docs cannot drift from the code).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from llamaswitch import _errors
from llamaswitch._errors import (
    ERROR_KINDS,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    LlamaSwitchError,
)
from llamaswitch._settings import Settings
from llamaswitch._vocabulary import markdown_table, rows, specs
from llamaswitch.bench.config import BenchConfig
from llamaswitch.gateway.presets import PresetOptions
from llamaswitch.servers.config import ENV_NAMES, ENV_PREFIXES, ServerConfig
from llamaswitch.tuning.objective import Objective
from llamaswitch.tuning.options import TuneOptions

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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cli_table(cls: type, *, skip: tuple[str, ...] = ()) -> str:
    """The command-line options of a config type: one row per field that has any."""
    lines = ["| option | field | values | meaning |", "|---|---|---|---|"]
    for name, field_spec, _default in rows(cls):
        style = field_spec.style
        if name in skip or style == "none" or field_spec.cli == ():
            continue
        options = ", ".join(f"`{o}`" for o in field_spec.cli_options(name))
        allowed = field_spec.kind.allowed
        metavar = field_spec.cli_metavar
        if metavar is not None:
            # The option's own form; a repeated one's wire form (a list, an object) is
            # not what the command line takes.
            allowed = f"`{metavar}`" if style == "repeat" else f"`{metavar}`: {allowed}"
        values = {
            "flag": "a flag (no value)",
            "list": f"{allowed}; a comma list sweeps",
            "repeat": f"{allowed}; repeat the option for more",
            "optional": f"{allowed}; the bare option means on",
        }.get(style, allowed)
        cells = (options, f"`{name}`", values, field_spec.doc)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


#: What each exit code means to a script (the codes are declared in _errors).
_EXIT_MEANINGS: Final[Mapping[int, str]] = {
    EXIT_OK: "success",
    EXIT_FAILED: "the operation failed: a server did not start or crashed, a benchmark "
    "failed, was cancelled or interrupted, a wait timed out, a fault of the service",
    EXIT_USAGE: "bad usage or input: an unknown option, an invalid config field (each is "
    "named), a bad setting, an option the llama.cpp binary cannot honour",
    EXIT_MISSING: "something required is missing: the model, a llama.cpp binary, the "
    "named server, the benchmark task",
    EXIT_CONFLICT: "a conflict: the port is in use or is the API's own, a later switch "
    "overtook this one, the task's state forbids it",
    EXIT_UNREACHABLE: "the service at `--url` cannot be reached, refused the key, is "
    "closing, or did not answer like llamaswitch",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C or SIGTERM (except the foreground "
    "`switch`/`start`, where Ctrl-C is the normal end: 0)",
}


def _tune_options() -> str:
    """``llamaswitch tune``'s objective and tune options: Objective's and TuneOptions'
    fields, one table (the header once)."""
    objective = _cli_table(Objective).splitlines()
    return "\n".join([*objective, *_cli_table(TuneOptions).splitlines()[2:]])


def _kinds() -> list[tuple[str, type[LlamaSwitchError]]]:
    # Only the kinds of the errors module: the same table whatever else was imported.
    return sorted(
        (code, kind) for code, kind in ERROR_KINDS.items() if kind.__module__ == _errors.__name__
    )


def _exit_codes() -> str:
    lines = ["| code | meaning | error kinds (`data.code`, REST status) |", "|---|---|---|"]
    for exit_code, meaning in sorted(_EXIT_MEANINGS.items()):
        kinds = ", ".join(
            f"`{code}` ({kind.http_status})"
            for code, kind in sorted(_kinds(), key=lambda item: (item[1].http_status, item[0]))
            if kind.cli_exit_code == exit_code
        )
        lines.append(f"| {exit_code} | {_cell(meaning)} | {kinds} |")
    return "\n".join(lines)


def _summary(kind: type[LlamaSwitchError]) -> str:
    """The first paragraph of a kind's docstring, as one line of Markdown."""
    paragraph = (inspect.getdoc(kind) or kind.title).split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def _error_kinds() -> str:
    lines = ["| status | `data.code` | CLI exit | when | extra `data` |", "|---|---|---|---|---|"]
    for code, kind in sorted(_kinds(), key=lambda item: (item[1].http_status, item[0])):
        extra = list(kind.fields)
        if kind.http_status == 422 and "errors" not in extra:
            extra.insert(0, "errors")
        if kind is _errors.ConfigValidationError:
            extra.append("fields")
        carried = ", ".join(f"`{name}`" for name in extra)
        cells = (str(kind.http_status), f"`{code}`", str(kind.cli_exit_code), _summary(kind))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + f" | {carried} |")
    return "\n".join(lines)


def _error_classes() -> str:
    """The exception classes in the order of their tree (declaration order)."""
    lines = ["| exception | `data.code` | HTTP | CLI exit | meaning |", "|---|---|---|---|---|"]
    for code, kind in ERROR_KINDS.items():
        if kind.__module__ != _errors.__name__:
            continue
        cells = (f"`{kind.__name__}`", f"`{code}`", str(kind.http_status),
                 str(kind.cli_exit_code), _summary(kind))  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


#: The settings of the gateway (docs/gateway.md lists them apart).
_GATEWAY_SETTINGS: Final = ("max_models", "vram_budget_mib", "ram_budget_mib", "idle_ttl_s",
                            "queue_max", "drain_timeout_s", "presets")  # fmt: skip


def _gateway_settings() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name in _GATEWAY_SETTINGS:
        setting = specs(Settings)[name]
        default = setting.default_doc or f"`{_default(name)}`"
        lines.append(f"| `{setting.env}` | {default} | {_cell(setting.doc)} |")
    return "\n".join(lines)


def _preset_options() -> str:
    lines = ["| key | allowed | meaning |", "|---|---|---|"]
    for name, field_spec, _default in rows(PresetOptions):
        cells = (f"`{name}`", field_spec.kind.allowed, field_spec.doc)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _gateway_errors() -> str:
    lines = ["| status | `error.code` | when |", "|---|---|---|"]
    gateway = [
        (code, kind)
        for code, kind in _kinds()
        if issubclass(kind, _errors.GatewayError) and kind is not _errors.GatewayError
    ]
    shared: list[type[LlamaSwitchError]] = [
        _errors.ModelNotFoundError,
        _errors.MalformedBodyError,
        _errors.UnauthorizedError,
    ]
    for code, kind in [*[(k.code, k) for k in shared], *gateway]:
        lines.append(f"| {kind.http_status} | `{code}` | {_cell(_summary(kind))} |")
    return "\n".join(lines)


_FRAGMENTS: Final[Mapping[str, Callable[[], str]]] = {
    "gateway-settings": _gateway_settings,
    "gateway-errors": _gateway_errors,
    "preset-options": _preset_options,
    "settings": _settings_table,
    "env-allow-list": _env_allow_list,
    "cli-server-options": lambda: _cli_table(ServerConfig),
    "cli-bench-options": lambda: _cli_table(BenchConfig),
    "cli-tune-options": _tune_options,
    "exit-codes": _exit_codes,
    "error-kinds": _error_kinds,
    "error-classes": _error_classes,
}
#: The hand-written pages with generated sections.
_MARKED: Final = ("configuration.md", "cli.md", "rest.md", "api.md", "gateway.md")

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
        root / "docs" / "model_params.md": _MODEL_PARAMS.format(table=markdown_table(ServerConfig)),
        root / "docs" / "benchmark_params.md": _BENCH_PARAMS.format(
            table=markdown_table(BenchConfig)
        ),
    }
    for name in _MARKED:
        page = root / "docs" / name
        pages[page] = _MARKER.sub(_fragment, page.read_text(encoding="utf-8"))
    return pages


def _fragment(found: re.Match[str]) -> str:
    name = found.group("name")
    if name not in _FRAGMENTS:
        raise KeyError(f"unknown generated section {name!r} (known: {', '.join(_FRAGMENTS)})")
    return f"{found.group(1)}{_FRAGMENTS[name]()}\n{found.group(4)}"


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
