"""Text that is valid Unicode: the rule every boundary applies.

Python strings can hold what no encoding can write: a lone UTF-16 surrogate (JSON's
``"\\ud800"`` decodes to one, and so do undecodable bytes in file names on POSIX, through
``surrogateescape``). Such a string raises ``UnicodeEncodeError`` wherever it is written
next: a log file, SQLite, a child's argv, a JSON response. So text is checked where it
enters (:func:`text_problem` names the problem), and text that is already stored is
cleaned where it is read back (:func:`scrub`), so one bad row can never break a listing.

>>> text_problem("alpha.gguf") is None
True
>>> text_problem("x\\ud800")
'must be valid Unicode text: it holds a lone surrogate (U+D800) at index 1'
>>> scrub("x\\ud800")
'x\\ufffd'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["encodable", "scrub", "scrub_data", "text_problem"]

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_REPLACEMENT: Final = "\ufffd"


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    return _SURROGATE.search(text) is None


def text_problem(text: str, *, nul: bool = True) -> str | None:
    """Why ``text`` cannot cross a boundary, or None when it can.

    A lone surrogate always disqualifies it; a NUL character too, unless ``nul`` is False
    (NUL ends a C string: llama.cpp would read a different argument than the one given).
    """
    found = _SURROGATE.search(text)
    if found is not None:
        return (
            f"must be valid Unicode text: it holds a lone surrogate "
            f"(U+{ord(found.group()):04X}) at index {found.start()}"
        )
    if nul and "\x00" in text:
        return "must not contain NUL characters"
    return None


def scrub(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (for text already stored)."""
    return _SURROGATE.sub(_REPLACEMENT, text) if not encodable(text) else text


def scrub_data(value: Any) -> Any:
    """JSON-like data with every string (keys included) passed through :func:`scrub`."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(v) for v in value]
    return value
