"""The one vocabulary of config fields: every fact about a field is stated once.

A config class (:class:`~llamaswitch.ServerConfig`, :class:`~llamaswitch.BenchConfig`,
:class:`~llamaswitch.Settings`, a model preset) declares each field with attrs and puts a
:class:`Spec` in its metadata: the one-line doc, the :class:`Kind` (type, range or
choices), the llama.cpp flag spellings, whether it sweeps, its CLI spelling, its
environment key. Everything else derives from that, generically, here:

- validation, field by field, every bad field reported at once (:func:`problems`);
- the wire form of a config, strict on what clients send (:func:`from_data`,
  :func:`to_data`);
- a JSON Schema per config type (:func:`json_schema`), which the OpenAPI document and
  the dashboard's forms use;
- argparse options and the config they collect (:func:`add_options`,
  :func:`options_to_data`);
- the field tables of ``docs/`` (:func:`markdown_table`);
- the flags ``extra_args`` may not carry (:func:`field_flags`).

llama.cpp argv goes through each spec's ``argv`` rule and the binary's
:class:`~llamaswitch._capabilities.Capabilities`, in the config classes themselves.

>>> import attrs
>>> @attrs.frozen(kw_only=True)
... class Demo:
...     threads: int | None = attrs.field(default=None, metadata=spec(
...         "CPU threads.", Whole(1, 64), flags=("-t", "--threads")))
>>> problems(Demo(threads=0))
[('threads', 'must be a whole number from 1 to 64, got 0')]
>>> json_schema(Demo)["properties"]["threads"]["anyOf"][0]
{'type': 'integer', 'minimum': 1, 'maximum': 64}
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs

from llamaswitch._text import text_problem

__all__ = [
    "INT32_MAX",
    "MODEL_PORT",
    "TCP_PORT",
    "Choice",
    "Custom",
    "Kind",
    "Number",
    "PathKind",
    "Spec",
    "Switch",
    "Text",
    "Whole",
    "add_options",
    "field_flags",
    "from_data",
    "json_schema",
    "markdown_table",
    "options_to_data",
    "problems",
    "spec",
    "specs",
    "to_data",
]

#: The metadata key under which a field's :class:`Spec` lives.
SPEC_KEY: Final = "llamaswitch"
#: llama.cpp parses numbers with ``std::stoi``: larger ones fail as "invalid parameter".
INT32_MAX: Final = 2**31 - 1

Schema: TypeAlias = dict[str, Any]
#: How llama.cpp receives a field: ``(capabilities, config, field name) -> argv``.
ArgvRule: TypeAlias = Callable[[Any, Any, str], list[str]]
CliStyle: TypeAlias = Literal["value", "list", "repeat", "flag", "optional", "none"]


# -- kinds: what a value may be ------------------------------------------------------------


class Kind:
    """What one value of a field may be.

    ``allowed`` is the noun phrase that says it ("a whole number from 1 to 4096"): settings
    quote it as is, configs as ``must be <allowed>, got <value>``.
    """

    allowed: str = "a value"

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not allowed, or None."""
        return None if self.accepts(value) else f"must be {self.allowed}, got {value!r}"

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is allowed (kinds override this or :meth:`problem`)."""
        raise NotImplementedError

    def schema(self) -> Schema:
        """The JSON Schema of one value."""
        return {}

    def parse(self, text: str) -> object:
        """A value from text (an environment variable, a command-line option).

        Raises ``ValueError`` whose message is :attr:`allowed`; the caller names the key.
        """
        return text.strip()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@attrs.frozen
class Whole(Kind):
    """A whole number; ``high`` None means up to :data:`INT32_MAX`, unsaid."""

    low: int | None = None
    high: int | None = None
    noun: str = "a whole number"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.low is not None and self.high is not None:
            return f"{self.noun} from {self.low} to {self.high}"
        return f"{self.noun} >= {self.low}" if self.low is not None else self.noun

    def accepts(self, value: object) -> bool:
        high = INT32_MAX if self.high is None else self.high
        low = -INT32_MAX if self.low is None else self.low
        return _is_int(value) and low <= value <= high  # type: ignore[operator]

    def schema(self) -> Schema:
        schema: Schema = {"type": "integer"}
        if self.low is not None:
            schema["minimum"] = self.low
        schema["maximum"] = INT32_MAX if self.high is None else self.high
        return schema

    def parse(self, text: str) -> object:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(self.allowed) from None


#: A TCP port, any (the REST API's own may be a system port when run as root).
TCP_PORT: Final = Whole(1, 65535, noun="a TCP port")
#: A model server's port: unprivileged only (below 1024 are the system's: ssh on 22...),
#: so a typo can never name one.
MODEL_PORT: Final = Whole(1024, 65535, noun="a TCP port")


@attrs.frozen
class Number(Kind):
    """A finite number (of ``unit``): from ``low`` to ``high``, or above ``above``."""

    low: float | None = None
    high: float | None = None
    above: float | None = None
    unit: str = "seconds"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        what = f"a number of {self.unit}" if self.unit else "a number"
        if self.above is not None and self.high is not None:
            return f"{what} greater than {self.above:g} and at most {self.high:g}"
        if self.above is not None:
            return f"{what} greater than {self.above:g}"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low:g} to {self.high:g}"
        return f"{what} >= {self.low:g}" if self.low is not None else what

    def accepts(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if not math.isfinite(value):
            return False
        if self.above is not None and not value > self.above:
            return False
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > self.high)

    def schema(self) -> Schema:
        schema: Schema = {"type": "number"}
        if self.low is not None:
            schema["minimum"] = self.low
        if self.above is not None:
            schema["exclusiveMinimum"] = self.above
        if self.high is not None:
            schema["maximum"] = self.high
        return schema

    def parse(self, text: str) -> object:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(self.allowed) from None


@attrs.frozen
class Choice(Kind):
    """One of a few words; ``padded``: blanks around the word are accepted (the field's
    converter strips them), and the schema says so."""

    values: tuple[str, ...]
    padded: bool = False

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"one of {', '.join(self.values)}"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and value in self.values

    def schema(self) -> Schema:
        if self.padded:
            words = "|".join(re.escape(v) for v in self.values)
            return {"type": "string", "pattern": f"^\\s*({words})\\s*$"}
        return {"enum": list(self.values)}


@attrs.frozen
class Switch(Kind):
    """On or off; on the wire also 0 and 1 (the seed's benchmark bodies use them)."""

    allowed_words: str = "true or false"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.allowed_words

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)

    def schema(self) -> Schema:
        return {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}]}

    def parse(self, text: str) -> object:
        word = text.strip().lower()
        if word in {"1", "true", "yes", "on"}:
            return True
        if word in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError("one of 1/0, true/false, yes/no, on/off")


@attrs.frozen
class Text(Kind):
    """Valid Unicode text, without NUL; optionally without some characters, or matching a
    pattern."""

    what: str = "a non-empty string"
    forbid: str = ""
    pattern: str | None = None
    empty: bool = False

    @property
    def allowed(self) -> str:  # type: ignore[override]
        extra = f" without {' or '.join(repr(c) for c in self.forbid)}" if self.forbid else ""
        return f"{self.what}{extra}"

    def problem(self, value: object) -> str | None:
        if not isinstance(value, str) or (not value and not self.empty):
            return f"must be {self.allowed}, got {value!r}"
        if any(c in value for c in self.forbid):
            return f"must be {self.allowed}, got {value!r}"
        if (reason := text_problem(value)) is not None:
            return reason
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"must be {self.what}, got {value!r}"
        return None

    def schema(self) -> Schema:
        schema: Schema = {"type": "string"}
        if not self.empty:
            schema["minLength"] = 1
        if self.pattern is not None:
            schema["pattern"] = f"^(?:{self.pattern})$"
        elif self.forbid:
            schema["pattern"] = f"^[^{re.escape(self.forbid)}]*$"
        return schema


@attrs.frozen
class PathKind(Kind):
    """A file system path."""

    allowed: str = "a path"

    def accepts(self, value: object) -> bool:
        return isinstance(value, Path)

    def schema(self) -> Schema:
        return {"type": "string", "minLength": 1}

    def parse(self, text: str) -> object:
        if not text.strip():
            raise ValueError("a non-empty path")
        return Path(text.strip())


@attrs.frozen
class Custom(Kind):
    """A kind with its own rule: ``check`` returns the reason a value is bad, or None."""

    allowed: str
    check: Callable[[object], str | None]
    json: Schema = attrs.field(factory=dict)
    parser: Callable[[str], object] | None = None

    def problem(self, value: object) -> str | None:
        return self.check(value)

    def schema(self) -> Schema:
        return dict(self.json)

    def parse(self, text: str) -> object:
        return self.parser(text) if self.parser is not None else text.strip()


#: Kinds of one plain value: a list given for one of them is "a list where one value goes".
_SCALARS: Final = (Whole, Number, Choice, Switch, Text, PathKind)


# -- specs: the facts of one field ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class Spec:
    """Everything llamaswitch knows about one config field, stated once."""

    #: One line for docs, ``--help`` and the JSON Schema's ``description``.
    doc: str
    kind: Kind
    #: Every llama.cpp spelling of its flag (any generation); the first is passed.
    flags: tuple[str, ...] = ()
    #: How each generation spells it, where they differ (``{"legacy": "--mlock", ...}``).
    dialects: Mapping[str, str] = attrs.field(factory=dict)
    #: How it reaches llama.cpp; None with ``flags``: ``flag value``; see :data:`ArgvRule`.
    argv: ArgvRule | None = None
    #: Not passed to llama.cpp (the supervisor's own knobs; or passed apart, as host/port).
    passed: bool = True
    #: A benchmark field llama-bench sweeps: one value or a list.
    sweep: bool = False
    #: ``""`` on the wire means "not set" (the seed's benchmark bodies write that).
    blank_unset: bool = False
    #: Command-line spellings; None: the llama.cpp flags (so pasted flags work), else
    #: ``--field-name``; ``()``: no option.
    cli: tuple[str, ...] | None = None
    cli_style: CliStyle | None = None
    cli_metavar: str | None = None
    #: The environment variable (settings).
    env: str | None = None
    #: The default as the docs say it, when the value itself does not say it well.
    default_doc: str | None = None
    #: Whether a dashboard form shows it among the common fields.
    common: bool = False

    def check(self, value: object) -> list[tuple[str, str]]:
        """``(path suffix, reason)`` for a bad value (``""`` for the field itself)."""
        if self.sweep and isinstance(value, tuple):
            if not value:
                return [("", "an empty list runs nothing: give at least one value")]
            many = len(value) > 1
            found = []
            for index, item in enumerate(value):
                reason = self.kind.problem(item)
                if reason:
                    found.append((f"[{index}]" if many else "", reason))
            return found
        if isinstance(value, list | tuple) and isinstance(self.kind, _SCALARS):
            return [("", f"takes one value, not a list: got {list(value)!r}")]
        reason = self.kind.problem(value)
        return [("", reason)] if reason else []

    def cli_options(self, name: str) -> tuple[str, ...]:
        """The option strings of the field on the command line."""
        if self.cli is not None:
            return self.cli
        # Every plain spelling, capitals too (llama-bench's -C), so a pasted line works.
        usable = tuple(f for f in self.flags if re.fullmatch(r"--?[A-Za-z][A-Za-z0-9-]*", f))
        return usable or (f"--{name.replace('_', '-')}",)

    @property
    def style(self) -> CliStyle:
        """How the command line takes it."""
        if self.cli_style is not None:
            return self.cli_style
        if isinstance(self.kind, Switch):
            return "list" if self.sweep else "flag"
        return "list" if self.sweep else "value"


def _is_factory(default: object) -> bool:
    return isinstance(default, attrs.Factory)  # type: ignore[arg-type]  # a class at run time


def spec(doc: str, kind: Kind, **facts: Any) -> dict[str, Spec]:
    """The attrs ``metadata`` of a field: ``attrs.field(metadata=spec(...))``."""
    return {SPEC_KEY: Spec(doc=doc, kind=kind, **facts)}


def specs(cls: type) -> dict[str, Spec]:
    """The specs of a config class's fields, in declaration order."""
    return {
        field.name: field.metadata[SPEC_KEY]
        for field in attrs.fields(cls)
        if SPEC_KEY in field.metadata
    }


def field_flags(cls: type) -> dict[str, str]:
    """Every llama.cpp flag a field of ``cls`` sets, mapped to that field's name."""
    return {flag: name for name, s in specs(cls).items() for flag in s.flags}


# -- validation ----------------------------------------------------------------------------


def problems(config: Any) -> list[tuple[str, str]]:
    """``(field path, reason)`` for every bad field of ``config`` (None fields are unset)."""
    found: list[tuple[str, str]] = []
    for name, s in specs(type(config)).items():
        value = getattr(config, name)
        if value is None:
            continue
        found += [(f"{name}{suffix}", reason) for suffix, reason in s.check(value)]
    return found


# -- the wire form -------------------------------------------------------------------------


def from_data(
    cls: type[Any], data: Mapping[str, Any] | None, *, path: str = "", what: str = "config"
) -> Any:
    """``cls`` built from a JSON object, strictly: unknown keys are refused by name.

    ``null`` (and ``""`` for fields that read it as "not set") leaves a field unset.
    Every problem is reported at once, paths prefixed with ``path`` (``config.threads``).
    """
    from llamaswitch._errors import ConfigValidationError

    prefix = f"{path}." if path else ""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigValidationError([(path or what, f"must be a JSON object, got {data!r}")])
    known = specs(cls)
    errors = [
        (f"{prefix}{key}", f"unknown field (known: {', '.join(sorted(known))})")
        for key in sorted(str(k) for k in data if k not in known)
    ]
    values = {
        str(key): value
        for key, value in data.items()
        if key in known
        and value is not None
        and not (known[key].blank_unset and isinstance(value, str) and not value.strip())
    }
    try:
        config = cls(**values)
    except ConfigValidationError as exc:
        errors += [(f"{prefix}{p}", r) for p, r in exc.errors]
    if errors:
        raise ConfigValidationError(errors)
    return config


def to_data(config: Any) -> dict[str, Any]:
    """The JSON form of a config: the fields that are set (a one-value sweep as the
    value, tuples as lists, mappings as objects); a field equal to its default is left
    out, so that two equal configs have the same form."""
    out: dict[str, Any] = {}
    fields = {f.name: f for f in attrs.fields(type(config))}
    for name, s in specs(type(config)).items():
        value = getattr(config, name)
        default = fields[name].default
        if value is None or (not _is_factory(default) and value == default):
            continue
        if isinstance(value, Mapping):
            if not value:
                continue
            out[name] = dict(value)
        elif isinstance(value, tuple):
            if not value:
                continue
            items = [list(v) if isinstance(v, tuple) else v for v in value]
            out[name] = items[0] if s.sweep and len(items) == 1 else items
        elif isinstance(value, Path):
            out[name] = str(value)
        else:
            out[name] = value
    return out


# -- JSON Schema ----------------------------------------------------------------------------

_BLANK: Final[Schema] = {"type": "string", "pattern": r"^\s*$", "description": "not set"}


def field_schema(s: Spec) -> Schema:
    """The JSON Schema of one field's value on the wire (null: not set)."""
    one = s.kind.schema()
    alternatives = [one]
    if s.sweep:
        alternatives.append({"type": "array", "items": one, "minItems": 1})
    if s.blank_unset:
        alternatives.append(_BLANK)
    alternatives.append({"type": "null"})
    schema: Schema = {"anyOf": alternatives, "description": s.doc}
    return schema


def _json_value(value: object) -> object:
    """A default as JSON has it: tuples as lists, paths as text (the schema is JSON)."""
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def json_schema(cls: type) -> Schema:
    """The JSON Schema of a config type: every field optional, unknown keys refused."""
    doc = (cls.__doc__ or "").strip().splitlines()
    properties: dict[str, Schema] = {}
    fields = {f.name: f for f in attrs.fields(cls)}
    for name, s in specs(cls).items():
        schema = field_schema(s)
        default = fields[name].default
        if default is not None and not _is_factory(default):
            schema["default"] = _json_value(default)
        if s.sweep:
            schema["x-sweep"] = True
        if s.common:
            schema["x-common"] = True
        properties[name] = schema
    return {
        "type": "object",
        "title": cls.__name__,
        "description": doc[0] if doc else cls.__name__,
        "properties": properties,
        "required": [],
        "additionalProperties": False,
    }


# -- the command line -------------------------------------------------------------------------


_INTEGER: Final = re.compile(r"[-+]?\d+")
_DECIMAL: Final = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _cli_token(raw: str, kind: Kind | None = None) -> object:
    # What the command line can say about a value's type, for the field's kind: whole
    # numbers become ints (text fields keep theirs: `--alias 42`), decimals become floats
    # for number fields; anything else stays text, so that the config's own rules (and
    # messages, naming the field) judge it: one set of rules, the library's.
    item = raw.strip()
    if isinstance(kind, Text | Choice | PathKind):
        return item
    if _INTEGER.fullmatch(item):
        return int(item)
    if isinstance(kind, Number) and _DECIMAL.fullmatch(item):
        return float(item)
    return item


def _cli_type(kind: Kind) -> Callable[[str], object]:
    return lambda raw: _cli_token(raw, kind)


def add_options(group: argparse._ActionsContainer, cls: type, *, skip: Sequence[str] = ()) -> None:
    """One option per field of ``cls`` (its spec's spellings), values kept as typed as the
    command line allows for the config to check."""
    for name, s in specs(cls).items():
        style = s.style
        if name in skip or style == "none" or s.cli == ():
            continue
        options = s.cli_options(name)
        help_text = s.doc
        if style == "flag":
            group.add_argument(*options, dest=name, action="store_true", default=None,
                               help=help_text)  # fmt: skip
        elif style == "repeat":
            group.add_argument(*options, dest=name, action="append", metavar=s.cli_metavar,
                               help=f"{help_text} (repeatable)")  # fmt: skip
        elif style == "optional":
            group.add_argument(*options, dest=name, nargs="?", const="on",
                               metavar=s.cli_metavar, help=help_text)  # fmt: skip
        elif style == "list":
            group.add_argument(*options, dest=name, metavar=s.cli_metavar or "X[,X...]",
                               help=f"{help_text} (a comma list sweeps)")  # fmt: skip
        else:
            group.add_argument(*options, dest=name, metavar=s.cli_metavar,
                               type=_cli_type(s.kind), help=help_text)  # fmt: skip


def options_to_data(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields the command line set, as wire data for :func:`from_data`."""
    out: dict[str, Any] = {}
    for name, s in specs(cls).items():
        given = getattr(args, name, None)
        if given is None:
            continue
        style = s.style
        if style == "list":
            items = [_cli_token(part, s.kind) for part in str(given).split(",")]
            out[name] = items[0] if len(items) == 1 else items
        elif style == "repeat" and s.sweep:
            out[name] = given[0] if len(given) == 1 else list(given)
        else:
            out[name] = given
    return out


# -- docs --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default_text(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return "`" + ",".join(str(v) for v in value) + "`" if value else "(none)"
    if isinstance(value, Mapping):
        return "(none)" if not value else f"`{dict(value)}`"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def rows(cls: type) -> Iterator[tuple[str, Spec, object]]:
    """``(name, spec, default)`` per field."""
    fields = {f.name: f for f in attrs.fields(cls)}
    for name, s in specs(cls).items():
        default = fields[name].default
        if _is_factory(default):
            default = None if default.takes_self else default.factory()
        yield name, s, default


def markdown_table(cls: type, *, llama_cpp: bool = True) -> str:
    """The reference table of a config type, for ``docs/``."""
    head = ["field", "allowed", "default"]
    if llama_cpp:
        head.append("llama.cpp")
    head += ["CLI", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s, default in rows(cls):
        allowed = s.kind.allowed + ("; a list sweeps" if s.sweep else "")
        cells = [f"`{name}`", allowed, s.default_doc or _default_text(default)]
        if llama_cpp:
            if s.dialects:
                flags = "; ".join(f"{gen}: `{text}`" for gen, text in s.dialects.items())
            elif s.flags:
                flags = ", ".join(f"`{f}`" for f in s.flags)
            else:
                flags = "(llamaswitch's own)" if not s.passed else ""
            cells.append(flags)
        cli = s.cli_options(name) if s.style != "none" and s.cli != () else ()
        cells.append(", ".join(f"`{c}`" for c in cli))
        cells.append(s.doc)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
