"""The names clients send as ``model``: catalog names, stems, preset ids and aliases.

With no configuration, every catalog model answers to its file name (``alpha.gguf``),
its stem (``alpha``) and, in a subfolder, its relative path with and without the
extension (``chat/alpha.gguf``, ``chat/alpha``); its id is the stem. A preset
(``[models.<id>]``) gives its file the preset's id and aliases, and the file's own names
become aliases of the first preset that names it.

Clashes are configuration errors that name both sides (a preset id or alias that is also
another model's name); two files whose automatic names coincide (``a/x.gguf`` and
``b/x.gguf`` both answer ``x.gguf``) keep only their unambiguous names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePosixPath

import attrs

from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import ModelNotFoundError, PresetsError
from llamaswitch.gateway.presets import Preset, Presets, merge
from llamaswitch.servers.config import ServerConfig

__all__ = ["GatewayModel", "NameBook", "automatic_names"]


@attrs.frozen
class GatewayModel:
    """One model as the gateway serves it: its id, the file, the settings it loads with."""

    id: str
    info: ModelInfo
    #: Every other name that reaches it.
    aliases: tuple[str, ...]
    #: The config it is loaded with (``[defaults]`` and the preset applied).
    config: ServerConfig
    ttl_s: float | None = None
    pinned: bool = False
    preload: bool = False
    #: The preset id it comes from (None: a catalog model without a preset).
    preset: str | None = None


def automatic_names(info: ModelInfo) -> tuple[str, ...]:
    """The names a catalog model answers to without configuration; the first is its id.

    >>> from pathlib import Path
    >>> info = ModelInfo(name="alpha.gguf", path=Path("m/chat/alpha.gguf"), size=1,
    ...                  relative_path="chat/alpha.gguf")
    >>> automatic_names(info)
    ('alpha', 'alpha.gguf', 'chat/alpha', 'chat/alpha.gguf')
    """
    relative = PurePosixPath(info.relative_path)
    names = [PurePosixPath(info.name).stem, info.name]
    if str(relative) != info.name:
        names += [str(relative.with_suffix("")), str(relative)]
    return tuple(dict.fromkeys(names))


class NameBook:
    """Every model the gateway can serve, and the name lookup."""

    def __init__(self, models: Sequence[GatewayModel]) -> None:
        self.models: tuple[GatewayModel, ...] = tuple(models)
        self._names: dict[str, GatewayModel] = {}
        for model in self.models:
            for name in (model.id, *model.aliases):
                self._names[name] = model

    @classmethod
    def build(
        cls,
        catalog: Sequence[ModelInfo],
        presets: Presets,
        resolve: Callable[[str], ModelInfo],
    ) -> NameBook:
        """The book for this catalog and these presets.

        ``resolve`` turns a preset's ``file`` into its catalog entry (raising
        ``ModelNotFoundError`` or ``ModelPathError``). Raises
        :class:`~llamaswitch.PresetsError` for files that cannot be found and for names
        that clash.
        """
        where = str(presets.path) if presets.path is not None else "presets"
        errors: list[tuple[str, str]] = []
        auto = _automatic(catalog)
        claimed: dict[str, list[Preset]] = {}
        infos: dict[str, ModelInfo] = {}
        for preset in presets.models:
            try:
                info = resolve(preset.file)
            except (ModelNotFoundError, ValueError) as exc:
                errors.append((f"[models.{preset.id}] file", str(exc)))
                continue
            infos[preset.id] = info
            claimed.setdefault(str(info.path), []).append(preset)

        models: list[GatewayModel] = []
        owner: dict[str, str] = {}  # name -> who holds it, for clash messages

        def take(name: str, holder: str, strict: bool) -> bool:
            held = owner.get(name)
            if held is None:
                owner[name] = holder
                return True
            if held != holder and strict:
                errors.append((holder, f"the name {name!r} is also {held}"))
            return False

        for preset in presets.models:
            info_or_none = infos.get(preset.id)
            if info_or_none is None:
                continue
            info = info_or_none
            holder = f"[models.{preset.id}]"
            names = [n for n in (preset.id, *preset.aliases) if take(n, holder, strict=True)]
            first = claimed[str(info.path)][0] is preset
            if first:  # the file's own names lead here
                names += [n for n in auto.get(str(info.path), ())
                          if n not in names and take(n, holder, strict=False)]  # fmt: skip
            if not names or names[0] != preset.id:
                continue
            models.append(GatewayModel(
                id=preset.id, info=info, aliases=tuple(names[1:]),
                config=preset.config, ttl_s=preset.ttl_s, pinned=preset.pinned,
                preload=preset.preload, preset=preset.id,
            ))  # fmt: skip
        for info in catalog:
            if str(info.path) in claimed:
                continue
            holder = f"the catalog model {info.relative_path}"
            names = [n for n in auto.get(str(info.path), ()) if take(n, holder, strict=False)]
            if not names:
                continue
            models.append(GatewayModel(
                id=names[0], info=info, aliases=tuple(names[1:]),
                config=merge(presets.defaults, None), ttl_s=presets.default_ttl_s,
                pinned=presets.default_pinned,
            ))  # fmt: skip
        # A preset name that a catalog model's unambiguous name also is: both named.
        for info in catalog:
            if str(info.path) in claimed:
                continue
            for name in auto.get(str(info.path), ()):
                held = owner.get(name, "")
                if held.startswith("[models."):
                    errors.append((held, f"the name {name!r} is also the catalog model "
                                         f"{info.relative_path}"))  # fmt: skip
        if errors:
            raise PresetsError(where, errors)
        return cls(models)

    def find(self, name: str) -> GatewayModel:
        """The model ``name`` reaches; ``ModelNotFoundError`` with the closest names."""
        model = self._names.get(name)
        if model is None:
            close = difflib.get_close_matches(name, list(self._names), n=3, cutoff=0.5)
            raise ModelNotFoundError(name, close)
        return model

    def get(self, name: str) -> GatewayModel | None:
        """The model ``name`` reaches, or None."""
        return self._names.get(name)

    def by_id(self) -> Mapping[str, GatewayModel]:
        """The models by id."""
        return {m.id: m for m in self.models}


def _automatic(catalog: Iterable[ModelInfo]) -> dict[str, tuple[str, ...]]:
    """Each file's automatic names, less those another file shares."""
    counts: dict[str, int] = {}
    names_of: dict[str, tuple[str, ...]] = {}
    for info in catalog:
        names = automatic_names(info)
        names_of[str(info.path)] = names
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return {path: tuple(n for n in names if counts[n] == 1) for path, names in names_of.items()}
