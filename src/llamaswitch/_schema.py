"""JSON Schemas generated from the types: what the wire format writes, stated by the types.

:func:`type_schema` reads a class's annotations (attrs fields, in order) and returns the
schema of its wire form (:mod:`llamaswitch._wire`); nested classes go into ``components``
as ``$ref``s. Configs are described by the field vocabulary
(:func:`llamaswitch._vocabulary.json_schema`), and a few classes with a wire form of their
own (a task carries the seed's ``task_id`` too; a comparison's rows) by overrides here.

>>> from llamaswitch.bench.task import BenchProgress
>>> components: dict[str, dict] = {}
>>> type_schema(BenchProgress, components)
{'$ref': '#/components/schemas/BenchProgress'}
>>> components["BenchProgress"]["properties"]["total"]
{'anyOf': [{'type': 'integer'}, {'type': 'null'}]}
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from llamaswitch._vocabulary import json_schema
from llamaswitch.bench.config import BenchConfig
from llamaswitch.servers.config import ServerConfig

__all__ = ["request_schema", "type_schema"]

Schema = dict[str, Any]
_CONFIGS: tuple[type, ...] = (ServerConfig, BenchConfig)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _field_schema(field: attrs.Attribute[Any], hint: Any, components: dict[str, Schema]) -> Schema:
    """A field's schema: from its type, or from the ``schema`` its metadata gives (a type
    or a schema), null added where the field's default is None."""
    override = field.metadata.get("schema")
    if override is None:
        return type_schema(hint, components)
    base = type_schema(override, components) if isinstance(override, type) else dict(override)
    return {"anyOf": [base, {"type": "null"}]} if field.default is None else base


def _class_schema(cls: type, components: dict[str, Schema], *, request: bool = False) -> Schema:
    name = cls.__name__
    if name in components:
        return _ref(name)
    if cls in _CONFIGS:
        components[name] = json_schema(cls)
        return _ref(name)
    components[name] = {}  # reserved first: classes may refer to each other
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    properties = {field.name: _field_schema(field, hints[field.name], components)
                  for field in fields}  # fmt: skip
    doc = (cls.__doc__ or name).strip().splitlines()[0]
    # What the service writes always carries every field; what a client sends needs only
    # the fields without a default.
    required = (
        [f.name for f in fields if f.default is attrs.NOTHING] if request else list(properties)
    )
    schema: Schema = {
        "type": "object",
        "description": doc,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    _override(cls, schema, components)
    components[name] = schema
    return _ref(name)


def request_schema(cls: type, components: dict[str, Schema]) -> Schema:
    """The schema of a request body class (fields with defaults are optional)."""
    return _class_schema(cls, components, request=True)


def _override(cls: type, schema: Schema, components: dict[str, Schema]) -> None:
    """Classes whose wire form differs from their fields (see :mod:`llamaswitch._wire`)."""
    from llamaswitch.bench.comparison import Comparison
    from llamaswitch.bench.task import BenchTask

    if cls is BenchTask:
        schema["properties"] = {"id": {"type": "string"}, "task_id": {"type": "string"},
                                **schema["properties"]}  # fmt: skip
        schema["required"] = list(schema["properties"])
    elif cls is Comparison:
        cell = {"anyOf": [{"type": "object", "properties": {
            "avg_ts": {"type": ["number", "null"]}, "stddev_ts": {"type": ["number", "null"]}},
            "required": ["avg_ts", "stddev_ts"]}, {"type": "null"}]}  # fmt: skip
        row = {
            "type": "object",
            "properties": {
                "test": {"type": "string"},
                "label": {"type": "string"},
                "params": {"type": "object"},
                "results": {
                    "type": "object",
                    "additionalProperties": cell,
                    "description": "By task id; null where that task has no such test.",
                },
            },
            "required": ["test", "label", "params", "results"],
            "additionalProperties": False,
        }
        schema["properties"]["rows"] = {"type": "array", "items": row}


def type_schema(tp: Any, components: dict[str, Schema]) -> Schema:
    """The schema of a value of type ``tp`` on the wire."""
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any or tp is object:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if origin in (Union, types.UnionType):
        return {"anyOf": [type_schema(arg, components) for arg in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        # NaN (a llama-bench stddev can be one) is written as null.
        return {"type": ["number", "null"]}
    if tp is str:
        return {"type": "string"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(tp, type) and issubclass(tp, PurePath | Path):
        return {"type": "string"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0], components)}
        items = [type_schema(arg, components) for arg in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items),
                "maxItems": len(items)}  # fmt: skip
    if origin in (list, Sequence) or tp in (list, tuple):
        return {"type": "array", "items": type_schema(args[0], components) if args else {}}
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        value = type_schema(args[1], components) if args else {}
        return {"type": "object", "additionalProperties": value}
    if isinstance(tp, type) and attrs.has(tp):
        return _class_schema(tp, components)
    raise TypeError(f"no wire schema for {tp!r}")
