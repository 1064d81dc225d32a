"""What a llama.cpp binary accepts, read from its ``--help``, and the flag dialects.

llama.cpp's flags change between builds (see FIELD_NOTES): ``-fa`` is a bare switch on
legacy ``llama-server`` and takes ``on|off|auto`` on current builds; ``--mlock`` and
``--no-mmap`` became ``--load-mode``; llama-bench's ``-mmp 0|1`` became ``-lm``. Rather than
keying on version numbers, :func:`parse_help` reads the binary's own ``--help`` into a
:class:`Capabilities` record, and the ``*_args`` methods here are the one place that maps
a typed setting to argv for whichever dialect the binary speaks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import attrs

from llamaswitch._errors import UnsupportedOptionError

__all__ = ["Capabilities", "Flag", "parse_help"]

BinaryKind = Literal["llama-server", "llama-bench"]

# A help line that starts an option: optional indent, then a dash. Descriptions of
# llama-server's options start at column 40; llama-bench aligns "(default: ...)".
_OPTION_LINE = re.compile(r"^ {0,4}-")
_GAP = re.compile(r"\s{2,}")
_BRACED = re.compile(r"[{<\[]([^}>\]]*)[}>\]]")
_ALLOWED = re.compile(r"allowed values:\s*(.+)$", re.IGNORECASE)
_ENV_NOTE = re.compile(r"\(env: (\w+)\)")
_DEFAULT_NUMBER = re.compile(r"\(default: (-?\d+)\b")
_BULLET = re.compile(r"^\s*-\s+([\w+.-]+)(?:\s+\([^)]*\))?\s*:")


@attrs.frozen
class Flag:
    """One option of a binary: its spellings, its value placeholder and allowed values."""

    names: tuple[str, ...]
    metavar: str | None
    choices: tuple[str, ...]
    description: str

    @property
    def takes_value(self) -> bool:
        """Whether the option consumes the next argument."""
        return self.metavar is not None

    @property
    def primary(self) -> str:
        """The spelling llamaswitch passes: the long form when there is one."""
        longs = [n for n in self.names if n.startswith("--")]
        return longs[0] if longs else self.names[0]


_FLAG_TOKEN = re.compile(r"--?[A-Za-z0-9][\w-]*,?")


def _split_option_line(line: str) -> tuple[tuple[str, ...], str | None, str]:
    """Split ``-ngl,  --gpu-layers, --n-gpu-layers N   description`` into its parts.

    Flags may be separated by any amount of space; the metavar follows the last flag,
    and a gap of two or more spaces starts the description.
    """
    text = line.strip()
    names: list[str] = []
    pos = 0
    while True:
        match = _FLAG_TOKEN.match(text, pos)
        if not match or (match.end() < len(text) and not text[match.end()].isspace()):
            break
        names.append(match.group().rstrip(","))
        pos = match.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if not match.group().endswith(",") and not _FLAG_TOKEN.match(text, pos):
            if pos - match.end() >= 2:
                # A gap right after the last flag: a value-less switch whose description
                # starts on this line (legacy llama-server's `-fa`, `--mlock`).
                return tuple(names), None, text[pos:]
            break
    metavar, description = _metavar_and_description(text[pos:])
    return tuple(names), metavar, description


def _metavar_and_description(rest: str) -> tuple[str | None, str]:
    parts = _GAP.split(rest, maxsplit=1)
    metavar = parts[0].strip()
    description = parts[1].strip() if len(parts) > 1 else ""
    if metavar.startswith("("):
        # llama-bench prints "(default: ...)" where a value-less switch's metavar goes.
        return None, f"{metavar} {description}".strip()
    default = metavar.find(" (default")
    if default > 0:
        description = f"{metavar[default:].strip()} {description}".strip()
        metavar = metavar[:default]
    return (metavar or None), description


def _choices(metavar: str | None, description: str) -> tuple[str, ...]:
    if metavar:
        braced = _BRACED.search(metavar)
        if braced:
            inner = braced.group(1)
            # `{none,layer,row}` lists choices with commas, `<0|1>` and `[on|off]` with
            # bars; `<0...100>`, `<pp,tg>`, `<n>` are placeholders, not choices.
            parts = inner.split("," if braced.group().startswith("{") else "|")
            if len(parts) > 1 and "..." not in inner:
                return tuple(p.strip() for p in parts if p.strip())
    for line in description.splitlines():
        allowed = _ALLOWED.search(line)
        if allowed:
            return tuple(v.strip() for v in allowed.group(1).split(",") if v.strip())
    bullets = [m.group(1) for m in map(_BULLET.match, description.splitlines()) if m]
    if len(bullets) > 1:
        return tuple(bullets)
    return ()


def parse_help(text: str) -> dict[str, Flag]:
    """Parse a llama.cpp ``--help`` text into flags, indexed by every spelling.

    Works for both layouts: llama-server's (``-c,    --ctx-size N   description``, with
    continuation lines indented to the description column) and llama-bench's
    (``  -c, --ctx-size <n>   (default: ...)``).
    """
    entries: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if _OPTION_LINE.match(line):
            entries.append((line, []))
        elif entries and line.startswith(" " * 8):
            entries[-1][1].append(line)
        elif entries and (not line.strip() or not line.startswith(" ")):
            # A section header or blank line ends the option's description.
            entries.append(("", []))
    flags: dict[str, Flag] = {}
    for line, continuation in entries:
        if not line:
            continue
        names, metavar, first = _split_option_line(line)
        if not names:
            continue
        description = "\n".join([first, *(c.strip() for c in continuation)])
        flag = Flag(names, metavar, _choices(metavar, description), description)
        for name in names:
            flags.setdefault(name, flag)
    return flags


@attrs.frozen
class Capabilities:
    """What one llama.cpp binary accepts, and how settings map onto its flags.

    Build it with :meth:`from_help`. ``version`` is used in error messages only.
    """

    kind: BinaryKind
    version: str
    flags: Mapping[str, Flag]

    @classmethod
    def from_help(cls, kind: BinaryKind, help_text: str, version: str = "unknown") -> Capabilities:
        """Read a binary's ``--help`` output."""
        return cls(kind=kind, version=version, flags=parse_help(help_text))

    # -- questions ------------------------------------------------------------------------

    def has(self, *names: str) -> bool:
        """Whether any of ``names`` is an accepted spelling."""
        return any(n in self.flags for n in names)

    def flag(self, *names: str) -> Flag | None:
        """The first flag known under one of ``names``."""
        for name in names:
            if name in self.flags:
                return self.flags[name]
        return None

    def choices(self, *names: str) -> tuple[str, ...]:
        """Allowed values of a flag (empty when free-form or unknown)."""
        flag = self.flag(*names)
        return flag.choices if flag else ()

    def default_number(self, *names: str) -> int | None:
        """The integer default ``--help`` states for a flag (``(default: 4096``), if any.

        >>> caps = Capabilities.from_help("llama-server",
        ...     "-c,    --ctx-size N                     context size (default: 4096)")
        >>> caps.default_number("-c", "--ctx-size"), caps.default_number("--parallel")
        (4096, None)
        """
        flag = self.flag(*names)
        found = _DEFAULT_NUMBER.search(flag.description) if flag is not None else None
        return int(found.group(1)) if found else None

    @functools.cached_property
    def env_flags(self) -> Mapping[str, Flag]:
        """The environment variables the binary reads, each with the flag it stands for
        (``LLAMA_ARG_THREADS`` -> ``--threads``), from the ``(env: ...)`` notes of --help."""
        found: dict[str, Flag] = {}
        for flag in self.flags.values():
            for name in _ENV_NOTE.findall(flag.description):
                found.setdefault(name, flag)
        return found

    @property
    def dialect(self) -> Literal["current", "legacy"]:
        """``current`` for builds with ``--load-mode`` or a valued ``-fa``, else ``legacy``."""
        fa = self.flag("-fa", "--flash-attn")
        if self.has("-lm", "--load-mode") or (fa is not None and fa.choices[:1] == ("on",)):
            return "current"
        return "legacy"

    @property
    def split_modes(self) -> tuple[str, ...]:
        """Split modes the binary accepts."""
        return self.choices("-sm", "--split-mode")

    @property
    def flash_attn_values(self) -> tuple[str, ...]:
        """Values ``-fa`` takes: ``()`` for a bare switch."""
        fa = self.flag("-fa", "--flash-attn")
        if fa is None or not fa.takes_value:
            return ()
        return fa.choices

    @property
    def load_modes(self) -> tuple[str, ...]:
        """Values of ``--load-mode`` (``()`` on builds that use ``--mlock``/``--no-mmap``)."""
        return self.choices("-lm", "--load-mode")

    # -- mapping --------------------------------------------------------------------------

    def unsupported(self, field: str, value: object, why: str) -> UnsupportedOptionError:
        """The error for a setting this binary cannot honour."""
        return UnsupportedOptionError(field, value, self.kind, self.version, why)

    def option(self, field: str, value: object, *names: str) -> list[str]:
        """``[flag, value]`` for a valued option, checked against its allowed values."""
        flag = self.flag(*names)
        if flag is None:
            raise self.unsupported(field, value, f"it has no {names[-1]} option")
        text = _text(value)
        if flag.choices and text not in flag.choices:
            raise self.unsupported(
                field, value, f"{flag.primary} accepts {', '.join(flag.choices)}"
            )
        return [flag.primary, text]

    def switch(self, field: str, *names: str) -> list[str]:
        """``[flag]`` for a value-less switch."""
        flag = self.flag(*names)
        if flag is None:
            raise self.unsupported(field, True, f"it has no {names[-1]} option")
        return [flag.primary]

    def flash_attn_args(self, value: bool | str, *, field: str = "flash_attn") -> list[str]:
        """Flash attention in this binary's dialect.

        llama-server legacy: bare ``-fa`` (on) or nothing (off; ``auto`` unsupported);
        llama-bench legacy: ``-fa 0|1``; current builds of both: ``-fa on|off|auto``.
        """
        word = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
        fa = self.flag("-fa", "--flash-attn")
        if fa is None:
            raise self.unsupported(field, value, "it has no flash attention option")
        if not fa.takes_value:
            if word == "on":
                return ["-fa"]
            if word == "off":
                return []
            raise self.unsupported(field, value, "-fa is an on-only switch in this build")
        if "on" in fa.choices:
            if word not in fa.choices:
                raise self.unsupported(field, value, f"-fa accepts {', '.join(fa.choices)}")
            return ["-fa", str(word)]
        # 0|1 dialect (legacy llama-bench)
        numeric = {"on": "1", "off": "0"}.get(str(word))
        if numeric is None:
            raise self.unsupported(field, value, "-fa accepts 0 or 1 in this build")
        return ["-fa", numeric]

    def server_load_args(self, *, mlock: bool | None, no_mmap: bool | None) -> list[str]:
        """``--mlock``/``--no-mmap`` (legacy) or the equivalent ``--load-mode`` (current)."""
        if not mlock and not no_mmap:
            return []
        modes = self.load_modes
        if modes:
            wanted = "mlock" if (mlock and no_mmap) else ("mmap+mlock" if mlock else "none")
            if wanted not in modes:
                raise self.unsupported(
                    "mlock" if mlock else "no_mmap", True, f"--load-mode accepts {', '.join(modes)}"
                )
            return ["--load-mode", wanted]
        args: list[str] = []
        if mlock:
            args += self.switch("mlock", "--mlock")
        if no_mmap:
            args += self.switch("no_mmap", "--no-mmap")
        return args

    def gpu_layers_args(
        self, value: int | str, *, field: str = "n_gpu_layers", legacy_all: str = "99999"
    ) -> list[str]:
        """``-ngl`` in this binary's dialect.

        Current builds take a count, ``auto`` or ``all``; legacy builds a count only, so
        ``all`` becomes ``legacy_all`` (a count above any model's layers: llama.cpp
        clamps it) and ``auto`` is unsupported there.
        """
        flag = self.flag("-ngl", "--gpu-layers", "--n-gpu-layers")
        if flag is None:
            raise self.unsupported(field, value, "it has no -ngl option")
        if isinstance(value, str):
            if f"'{value}'" in flag.description:
                return [flag.primary, value]
            if value == "all":
                return [flag.primary, legacy_all]
            raise self.unsupported(field, value, f"{flag.primary} takes a number of layers only")
        return [flag.primary, str(value)]

    def bench_mmap_args(self, values: Sequence[bool]) -> list[str]:
        """llama-bench's mmap sweep: ``-mmp 0,1`` (legacy) or ``-lm none,mmap`` (current)."""
        if self.has("-mmp", "--mmap"):
            return ["-mmp", ",".join("1" if v else "0" for v in values)]
        if self.has("-lm", "--load-mode"):
            modes = self.load_modes
            words = ["mmap" if v else "none" for v in values]
            bad = [w for w in words if modes and w not in modes]
            if bad:
                raise self.unsupported("mmap", values, f"-lm accepts {', '.join(modes)}")
            return ["-lm", ",".join(words)]
        raise self.unsupported("mmap", values, "it has neither -mmp nor -lm")

    def check_choices(self, field: str, values: Iterable[object], *names: str) -> None:
        """Raise if any value is outside the flag's allowed values."""
        flag = self.flag(*names)
        if flag is None:
            raise self.unsupported(field, list(values), f"it has no {names[-1]} option")
        for value in values:
            if flag.choices and _text(value) not in flag.choices:
                raise self.unsupported(
                    field, value, f"{flag.primary} accepts {', '.join(flag.choices)}"
                )


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
