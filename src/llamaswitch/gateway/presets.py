"""Model presets: ``llamaswitch.toml``, the ids, aliases and settings clients name.

.. code-block:: toml

    [defaults]              # every model: any ServerConfig field, and ttl_s, pinned
    ctx_size = 4096

    [models.qwen]           # the id clients send as "model"
    file = "Qwen2.5-7B-Instruct-Q4_K_M.gguf"   # a catalog name, or a path in the folder
    aliases = ["gpt-4o-mini"]
    ttl_s = 600             # unload after 10 idle minutes
    pinned = false          # never evicted to make room
    preload = true          # loaded when the service starts
    n_gpu_layers = "all"    # any ServerConfig field, checked by the one vocabulary

The file is read with the standard library's ``tomllib``. Every problem is reported at
once, naming the table, the key and the reason (:class:`~llamaswitch.PresetsError`);
a file that fails keeps the presets in effect before it (the gateway's reload).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from llamaswitch._errors import ConfigValidationError, PresetsError
from llamaswitch._vocabulary import Custom, Number, Switch, Text, from_data, spec, specs, to_data
from llamaswitch.servers.config import ServerConfig

__all__ = ["PRESETS_FILE_NAME", "Preset", "PresetOptions", "Presets", "load_presets"]

#: The presets file looked for in the models folder when ``LLAMASWITCH_PRESETS`` is unset.
PRESETS_FILE_NAME = "llamaswitch.toml"


def _aliases_problem(value: object) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        return f"must be a list of non-empty strings, got {value!r}"
    return None


def _to_aliases(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


_ALIASES = Custom("a list of names", _aliases_problem,
                  {"type": "array", "items": {"type": "string", "minLength": 1}})  # fmt: skip


@attrs.frozen(kw_only=True)
class PresetOptions:
    """What a preset says beyond its :class:`~llamaswitch.ServerConfig` (one vocabulary)."""

    file: str | None = attrs.field(
        default=None,
        metadata=spec(
            "The model: a catalog name or a path in the models folder. Unset: the id.",
            Text(what="a catalog name or a path in the models folder"),
        ),
    )
    aliases: tuple[str, ...] = attrs.field(
        default=(),
        converter=_to_aliases,
        metadata=spec("More names clients may send as model.", _ALIASES),
    )
    ttl_s: float | None = attrs.field(
        default=None,
        metadata=spec(
            "Unload after this long idle (0: never). Unset: LLAMASWITCH_IDLE_TTL_S.",
            Number(low=0),
        ),
    )
    pinned: bool | None = attrs.field(
        default=None,
        metadata=spec("Never unloaded to make room for another model.", Switch()),
    )
    preload: bool | None = attrs.field(
        default=None,
        metadata=spec("Loaded when the service starts.", Switch()),
    )

    def __attrs_post_init__(self) -> None:
        from llamaswitch._vocabulary import problems

        errors = problems(self)
        if errors:
            raise ConfigValidationError(errors)


#: Keys a [defaults] table may not hold: they name one model.
_PER_MODEL_ONLY = ("file", "aliases", "preload")


@attrs.frozen
class Preset:
    """One ``[models.<id>]`` table, with ``[defaults]`` applied."""

    id: str
    #: The model reference (``file``, or the id when the table has none).
    file: str
    aliases: tuple[str, ...]
    config: ServerConfig
    ttl_s: float | None = None
    pinned: bool = False
    preload: bool = False


@attrs.frozen
class Presets:
    """The presets in effect: the models' tables and what ``[defaults]`` gives the rest."""

    models: tuple[Preset, ...] = ()
    defaults: ServerConfig = attrs.field(factory=ServerConfig)
    default_ttl_s: float | None = None
    default_pinned: bool = False
    #: The file they were read from (None: no file).
    path: Path | None = None

    def by_id(self) -> dict[str, Preset]:
        """The presets by id."""
        return {p.id: p for p in self.models}

    def to_data(self) -> dict[str, Any]:
        """The JSON form (``GET /api/v1/presets``)."""
        return {
            "path": None if self.path is None else str(self.path),
            "defaults": {**to_data(self.defaults),
                         **_gateway_data(self.default_ttl_s, self.default_pinned)},
            "models": [
                {"id": p.id, "file": p.file, "aliases": list(p.aliases),
                 "preload": p.preload, **_gateway_data(p.ttl_s, p.pinned),
                 "config": to_data(p.config)}
                for p in self.models
            ],
        }  # fmt: skip


def _gateway_data(ttl_s: float | None, pinned: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"pinned": pinned}
    if ttl_s is not None:
        data["ttl_s"] = ttl_s
    return data


def load_presets(path: Path) -> Presets:
    """Read and check the presets file at ``path`` (every problem at once).

    Raises :class:`~llamaswitch.PresetsError` naming the file, the table, the key and
    the reason.
    """
    shown = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PresetsError(shown, [("", f"cannot be read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise PresetsError(shown, [("", f"is not UTF-8 text (byte {exc.start})")]) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetsError(shown, [("", f"is not valid TOML: {exc}")]) from exc
    return parse_presets(document, path=path)


def parse_presets(document: Mapping[str, Any], *, path: Path) -> Presets:
    """Check a parsed presets document (see :func:`load_presets`)."""
    errors: list[tuple[str, str]] = []
    unknown = sorted(set(document) - {"defaults", "models"})
    errors += [(f"[{k}]", "unknown table (known: [defaults], [models.<id>])") for k in unknown]

    raw_defaults = document.get("defaults", {})
    defaults_config = ServerConfig()
    options = PresetOptions()
    if not isinstance(raw_defaults, Mapping):
        errors.append(("defaults", "must be a table"))
    else:
        for key in _PER_MODEL_ONLY:
            if key in raw_defaults:
                errors.append((f"[defaults] {key}", "names one model: only in [models.<id>]"))
        clean = {k: v for k, v in raw_defaults.items() if k not in _PER_MODEL_ONLY}
        parsed = _table("[defaults]", clean, errors)
        if parsed is not None:
            options, defaults_config = parsed

    raw_models = document.get("models", {})
    presets: list[Preset] = []
    if not isinstance(raw_models, Mapping):
        errors.append(("models", "must hold tables: [models.<id>]"))
        raw_models = {}
    base = to_data(defaults_config)
    for model_id, table in raw_models.items():
        where = f"[models.{model_id}]"
        if not isinstance(table, Mapping):
            errors.append((where, "must be a table"))
            continue
        if not model_id.strip() or model_id != model_id.strip():
            errors.append((where, "the id must be a non-empty name without surrounding spaces"))
            continue
        parsed = _table(where, {**base, **table}, errors)
        if parsed is None:
            continue
        own, config = parsed
        presets.append(Preset(
            id=model_id, file=own.file or model_id, aliases=own.aliases, config=config,
            ttl_s=own.ttl_s if own.ttl_s is not None else options.ttl_s,
            pinned=bool(own.pinned if own.pinned is not None else options.pinned),
            preload=bool(own.preload),
        ))  # fmt: skip
    if errors:
        raise PresetsError(str(path), errors)
    return Presets(models=tuple(presets), defaults=defaults_config,
                   default_ttl_s=options.ttl_s, default_pinned=bool(options.pinned),
                   path=path)  # fmt: skip


_OPTION_KEYS = frozenset(specs(PresetOptions))
_CONFIG_KEYS = frozenset(specs(ServerConfig))


def _table(
    where: str, table: Mapping[str, Any], errors: list[tuple[str, str]]
) -> tuple[PresetOptions, ServerConfig] | None:
    """Split one table into its preset options and its ServerConfig, checking both."""
    found: list[tuple[str, str]] = []
    unknown = sorted(k for k in table if k not in _OPTION_KEYS and k not in _CONFIG_KEYS)
    for key in unknown:
        close = difflib.get_close_matches(key, _OPTION_KEYS | _CONFIG_KEYS, n=1)
        hint = f"did you mean {close[0]}?" if close else (
            "a preset takes file, aliases, ttl_s, pinned, preload and the ServerConfig "
            "fields (docs/model_params.md)")  # fmt: skip
        found.append((f"{where} {key}", f"unknown key; {hint}"))
    own: PresetOptions | None = None
    config: ServerConfig | None = None
    try:
        own = from_data(PresetOptions, {k: v for k, v in table.items() if k in _OPTION_KEYS})
    except ConfigValidationError as exc:
        found += [(f"{where} {p}", r) for p, r in exc.errors]
    try:
        config = ServerConfig.from_dict({k: v for k, v in table.items() if k in _CONFIG_KEYS})
    except ConfigValidationError as exc:
        found += [(f"{where} {p}", r) for p, r in exc.errors]
    errors += found
    if found or own is None or config is None:
        return None
    return own, config


def merge(base: ServerConfig, over: ServerConfig | None) -> ServerConfig:
    """``base`` with every field ``over`` sets replaced (a request's config over a preset)."""
    if over is None:
        return base
    return ServerConfig.from_dict({**to_data(base), **to_data(over)})
