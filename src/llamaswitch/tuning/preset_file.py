"""Writing a tune's result into the presets file, leaving everything else as it was.

The presets file (``llamaswitch.toml``, see :mod:`llamaswitch.gateway.presets`) is the
user's: it holds their tables and comments. :func:`write_preset` changes one
``[models.<id>]`` table and nothing else:

- a new table is appended to the text as it is, so every other byte stays;
- an existing table is edited in place with tomlkit: the keys the tune decides are set
  (keeping each one's inline comment) or removed, the user's other keys (``aliases``,
  ``ttl_s``, ``pinned``...) and comments stay, and the previous tune's comment lines are
  replaced by the new ones.

The comment lines go first in the table; they start with ``llamaswitch tune`` (that is
how a later tune finds them). The result is checked as a presets file before it is
written, and written atomically (a temporary file renamed over the old one), so a
reader never sees half a file.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "llamaswitch.toml"
>>> _ = path.write_text("# mine\\n[models.chat]\\nfile = 'chat.gguf'\\n")
>>> write_preset(path, "tiny-tuned", file="tiny.gguf", settings={"threads": 2},
...              owned={"threads"}, comment=["llamaswitch tune 1: tg128 10.0 t/s"])
>>> print(path.read_text(), end="")
# mine
[models.chat]
file = 'chat.gguf'
<BLANKLINE>
[models.tiny-tuned]
# llamaswitch tune 1: tg128 10.0 t/s
file = "tiny.gguf"
threads = 2
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from llamaswitch._errors import PresetsError
from llamaswitch.gateway.presets import parse_presets

__all__ = ["COMMENT_PREFIX", "write_preset"]

#: How the comment lines a tune writes begin.
COMMENT_PREFIX: Final = "llamaswitch tune"
_NEW_FILE_HEAD: Final = (
    "# Model presets (docs/gateway.md). Tables written by `llamaswitch tune` say so in\n"
    "# their first comment lines; edit them as you like.\n"
)


def write_preset(
    path: Path,
    preset_id: str,
    *,
    file: str,
    settings: Mapping[str, Any],
    owned: Iterable[str],
    comment: Sequence[str],
) -> None:
    """Write ``[models.<preset_id>]`` with ``file`` and ``settings`` into ``path``.

    ``settings`` are ServerConfig fields in their JSON form; ``owned`` the keys the tune
    decides (those it does not set are removed from an existing table). Raises
    :class:`~llamaswitch.PresetsError` when the file cannot be read or parsed, or when
    the result would not be a valid presets file; the file is then left untouched.
    """
    import tomlkit

    shown = str(path)
    try:
        text = path.read_bytes().decode("utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetsError(shown, [("", f"cannot be read: {exc}")]) from exc
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise PresetsError(shown, [("", f"is not valid TOML: {exc}")]) from exc
    models = document.get("models")
    table = _table(preset_id, file, settings, comment)
    if isinstance(models, tomlkit.items.InlineTable):
        # `models = { ... }`: an inline table holds no comments and no [table] inside.
        kept = dict(models.get(preset_id, {}))
        kept = {k: v for k, v in kept.items() if k not in set(owned)}
        models[preset_id] = tomlkit.inline_table()
        models[preset_id].update({**kept, "file": file, **settings})
        new_text = tomlkit.dumps(document)
    elif models is not None and preset_id in models:
        models[preset_id] = _updated(models[preset_id], file, settings, set(owned), comment)
        new_text = tomlkit.dumps(document)
    else:
        new_text = _appended(text, preset_id, table)
        if not _valid_toml(new_text):
            # The file spells [models] in a way a new table cannot extend as text (dotted
            # keys): let tomlkit place it.
            if models is None:
                document["models"] = tomlkit.table(is_super_table=True)
            document["models"][preset_id] = table
            new_text = tomlkit.dumps(document)
    try:
        parse_presets(tomllib.loads(new_text), path=path)
    except tomllib.TOMLDecodeError as exc:
        raise PresetsError(shown, [("", f"would not be valid TOML: {exc}")]) from exc
    _replace(path, new_text)


def _table(preset_id: str, file: str, settings: Mapping[str, Any], comment: Sequence[str]) -> Any:
    import tomlkit

    table = tomlkit.table()
    for line in comment:
        table.add(tomlkit.comment(line))
    table.add("file", file)
    for key, value in settings.items():
        table.add(key, value)
    return table


def _appended(text: str, preset_id: str, table: Any) -> str:
    import tomlkit

    rendered = tomlkit.dumps({"models": {preset_id: table}})
    if not text:
        return _NEW_FILE_HEAD + "\n" + rendered
    separator = "\n" if text.endswith("\n") else "\n\n"
    return text + separator + rendered


def _updated(
    old: Any, file: str, settings: Mapping[str, Any], owned: set[str], comment: Sequence[str]
) -> Any:
    """A copy of the table ``old`` with new comment lines and the tuned keys set.

    The items keep their trivia (inline comments, blank lines); the previous tune's
    comment lines give way to the new ones; the user's keys and comments stay.
    """
    import tomlkit
    from tomlkit.items import Comment

    wanted = {"file": file, **settings}
    table = tomlkit.table()
    for line in comment:
        table.add(tomlkit.comment(line))
    done: set[str] = set()
    for key, item in old.value.body:
        if key is None:
            if isinstance(item, Comment) and item.as_string().strip().startswith(
                f"# {COMMENT_PREFIX}"
            ):
                continue
            table.add(item)
            continue
        name = key.key
        kept = item
        if name in wanted:
            done.add(name)
            if item.unwrap() != wanted[name]:
                kept = _with_trivia(tomlkit.item(wanted[name]), item)
        elif name in owned:
            continue  # a tuned key the new result leaves at llama.cpp's default
        table.add(key, kept)
    for name, value in wanted.items():
        if name not in done:
            table.add(name, value)
    return table


def _with_trivia(new: Any, old: Any) -> Any:
    """``new`` with ``old``'s inline comment and spacing."""
    with contextlib.suppress(AttributeError):
        new.trivia.indent = old.trivia.indent
        new.trivia.comment_ws = old.trivia.comment_ws
        new.trivia.comment = old.trivia.comment
        new.trivia.trail = old.trivia.trail
    return new


def _valid_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, keeping the file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
