"""The JSON Schema of each config type agrees with the library's own rules.

``json_schema(cls)`` is what the OpenAPI document and the dashboard's forms use. Here it
is checked against the library in both directions:

- what the library writes (``to_data`` of a valid config, built from values Hypothesis
  draws for each field's kind) is valid under the schema;
- a value the schema can rule out (out of range, not one of the choices, the wrong JSON
  type, an unknown key) is refused by the schema *and* by the library, naming the field.

Strategies are derived from the vocabulary's kinds; the few fields with a rule of their
own (a ``Custom`` kind) have a strategy below, and a test makes sure none is missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given, reject
from hypothesis import strategies as st

from llamaswitch._errors import ConfigValidationError, LlamaSwitchError
from llamaswitch._settings import Settings
from llamaswitch._vocabulary import (
    INT32_MAX,
    Choice,
    Custom,
    Kind,
    Number,
    PathKind,
    Spec,
    Switch,
    Text,
    Whole,
    from_data,
    json_schema,
    specs,
    to_data,
)
from llamaswitch.bench.config import BenchConfig
from llamaswitch.servers.config import ServerConfig

CONFIGS: tuple[type, ...] = (ServerConfig, BenchConfig, Settings)
#: Settings written as a string in .env, held (and written to JSON) as a list.
_TUPLE_SETTINGS = ("model_ports", "rpc_hosts")

#: Characters any text field takes (no lone surrogates, no NUL: the library's text rule).
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")

#: Valid values for the fields whose kind has a rule of its own.
CUSTOM: dict[tuple[type, str], st.SearchStrategy[Any]] = {
    (ServerConfig, "host"): st.sampled_from(["127.0.0.1", "::1", "localhost", "0.0.0.0"]),
    (ServerConfig, "n_gpu_layers"): st.integers(-1, 9999) | st.sampled_from(["all", "auto"]),
    (ServerConfig, "flash_attn"): st.booleans() | st.sampled_from(["on", "off", "auto"]),
    (ServerConfig, "tensor_split"): st.lists(
        st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=8
    ).filter(lambda v: any(x > 0 for x in v))
    | st.just("0.5,0.5"),
    (ServerConfig, "extra_args"): st.lists(
        st.sampled_from([("--props",), ("--timeout", "30"), ("--no-webui",)]), max_size=3
    ).map(lambda parts: [a for p in parts for a in p]),
    (ServerConfig, "env"): st.dictionaries(
        st.sampled_from(["CUDA_VISIBLE_DEVICES", "GGML_SCHED_MAX_COPIES", "OMP_NUM_THREADS"]),
        st.text(_CHARS, max_size=8),
        max_size=3,
    ),
    (BenchConfig, "pg"): st.tuples(st.integers(0, 4096), st.integers(0, 4096)).map(
        lambda p: f"{p[0]},{p[1]}"
    )
    | st.tuples(st.integers(0, 4096), st.integers(0, 4096)).map(list),
    (BenchConfig, "cpu_mask"): st.from_regex(r"0x[0-9a-f]{1,8}", fullmatch=True),
    (BenchConfig, "flash_attn"): st.booleans() | st.sampled_from([0, 1, "on", "off", "auto"]),
    (BenchConfig, "tensor_split"): st.sampled_from(["0.5,0.5", "1/3", "0"]),
    (Settings, "model_ports"): st.integers(1024, 60000).map(lambda low: (low, low + 100)),
    (Settings, "rpc_hosts"): st.lists(st.sampled_from(["box", "10.0.0.2:50052"]), max_size=2),
    (Settings, "server_host"): st.sampled_from(["127.0.0.1", "::1", "localhost"]),
    (Settings, "gpu_layers"): st.integers(-1, 999),
}


def kind_values(kind: Kind) -> st.SearchStrategy[Any]:
    """Values ``kind`` accepts, drawn from what it says about itself."""
    if isinstance(kind, Whole):
        low = -INT32_MAX if kind.low is None else kind.low
        return st.integers(low, INT32_MAX if kind.high is None else kind.high)
    if isinstance(kind, Number):
        low = kind.low if kind.low is not None else kind.above
        return st.floats(
            min_value=low, max_value=kind.high if kind.high is not None else 1e12,
            exclude_min=kind.above is not None, allow_nan=False, allow_infinity=False,
        )  # fmt: skip
    if isinstance(kind, Choice):
        return st.sampled_from(kind.values)
    if isinstance(kind, Switch):
        return st.booleans()
    if isinstance(kind, Text):
        chars = st.characters(blacklist_categories=("Cs",),
                              blacklist_characters="\x00" + kind.forbid)  # fmt: skip
        if kind.pattern is not None:
            return st.from_regex(kind.pattern, fullmatch=True, alphabet=chars)
        return st.text(chars, min_size=0 if kind.empty else 1, max_size=20)
    if isinstance(kind, PathKind):
        return st.text(_CHARS, min_size=1, max_size=20).map(Path)
    raise AssertionError(f"no strategy for {kind!r}: add one to CUSTOM")


def field_values(cls: type, name: str, field_spec: Spec) -> st.SearchStrategy[Any]:
    one = CUSTOM[cls, name] if (cls, name) in CUSTOM else kind_values(field_spec.kind)
    if field_spec.sweep:
        return one | st.lists(one, min_size=1, max_size=3)
    return one


@st.composite
def valid_configs(draw: st.DrawFn, cls: type) -> Any:
    """A config of ``cls`` with a handful of fields set (a sweep of every field at once
    would ask llama-bench for millions of tests, which the library rightly refuses)."""
    fields = specs(cls)
    names = draw(st.sets(st.sampled_from(sorted(fields)), max_size=6))
    values = {name: draw(field_values(cls, name, fields[name])) for name in names}
    try:
        return cls(**values)
    except LlamaSwitchError:  # a rule across fields (mmap with load_mode, ports...)
        reject()


def validator(cls: type) -> jsonschema.Draft202012Validator:
    schema = json_schema(cls)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(cls: type, data: object) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator(cls).iter_errors(data)]


# -- the schemas themselves -------------------------------------------------------------------


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_the_schema_is_valid_json_schema_and_json(cls: type) -> None:
    schema = json_schema(cls)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads(json.dumps(schema)) == schema
    assert set(schema["properties"]) == set(specs(cls))
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_default_is_valid_under_its_own_schema(cls: type) -> None:
    for name, prop in json_schema(cls)["properties"].items():
        if cls is Settings and name in _TUPLE_SETTINGS:
            continue
        if "default" in prop:
            assert schema_errors(cls, {name: prop["default"]}) == [], name


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_with_a_rule_of_its_own_has_a_strategy(cls: type) -> None:
    customs = {name for name, s in specs(cls).items() if isinstance(s.kind, Custom)}
    assert customs == {name for owner, name in CUSTOM if owner is cls}


# -- what the library writes, the schema accepts ------------------------------------------------

SEED_SERVER = {"host": "127.0.0.1", "port": 8080, "threads": 8, "n_gpu_layers": 99,
               "split_mode": "layer", "tensor_split": "0.5,0.5", "main_gpu": 0,
               "flash_attn": True, "mlock": True, "cache_type_k": "f16"}  # fmt: skip
SEED_BENCH = {"n_prompt": 512, "n_gen": 128, "n_gpu_layers": 99, "flash_attn": 1,
              "batch_size": 2048, "threads": 32, "repetitions": 5, "output": "md",
              "progress": 1, "cpu_mask": "", "numa": ""}  # fmt: skip


@pytest.mark.parametrize(("cls", "body"), [(ServerConfig, SEED_SERVER), (BenchConfig, SEED_BENCH)])
def test_the_seeds_bodies_are_valid_as_sent_and_as_written_back(
    cls: type, body: dict[str, Any]
) -> None:
    assert schema_errors(cls, body) == []
    assert schema_errors(cls, to_data(from_data(cls, body))) == []


def test_typical_settings_are_valid_as_written() -> None:
    settings = Settings(models_dir=Path("/srv/models"), server_port=9000, gpu_layers=20,
                        api_key="s3cret", bench_concurrency=2)  # fmt: skip
    assert schema_errors(Settings, to_data(settings)) == []


@given(config=valid_configs(ServerConfig))
def test_every_valid_server_config_is_valid_under_the_schema(config: ServerConfig) -> None:
    data = json.loads(json.dumps(to_data(config)))
    assert schema_errors(ServerConfig, data) == []
    assert from_data(ServerConfig, data) == config


@given(config=valid_configs(BenchConfig))
def test_every_valid_bench_config_is_valid_under_the_schema(config: BenchConfig) -> None:
    data = json.loads(json.dumps(to_data(config)))
    assert schema_errors(BenchConfig, data) == []
    assert from_data(BenchConfig, data) == config


@given(settings=valid_configs(Settings))
def test_every_valid_settings_is_valid_under_the_schema(settings: Settings) -> None:
    data = json.loads(json.dumps(to_data(settings)))
    assert schema_errors(Settings, data) == []


@pytest.mark.parametrize("name", _TUPLE_SETTINGS)
def test_tuple_settings_are_valid_under_the_schema(name: str) -> None:
    settings = Settings(model_ports=(9000, 9100), rpc_hosts=("box:50052",))
    assert schema_errors(Settings, {name: to_data(settings)[name]}) == []


# -- what the schema rules out, the library refuses too -----------------------------------------

_NOT_TEXT = st.integers() | st.booleans() | st.lists(st.integers(), min_size=1, max_size=2)


def kind_invalid(kind: Kind, *, blank_unset: bool) -> st.SearchStrategy[Any] | None:
    """Values a JSON Schema can tell are not ``kind``'s (None: none worth drawing)."""
    wrong_type = st.text(max_size=5).filter(lambda t: not t.strip()) if not blank_unset else None
    options: list[st.SearchStrategy[Any]] = []
    if isinstance(kind, Whole):
        if kind.low is not None:
            options.append(st.integers(max_value=kind.low - 1))
        options.append(st.integers(min_value=(kind.high or INT32_MAX) + 1))
        options += [st.sampled_from(["4", "one", True, False, 2.5])]
    elif isinstance(kind, Number):
        if kind.low is not None:
            options.append(st.floats(max_value=kind.low, exclude_max=True, allow_nan=False,
                                     allow_infinity=False))  # fmt: skip
        if kind.above is not None:
            options.append(st.floats(max_value=kind.above, allow_nan=False,
                                     allow_infinity=False))  # fmt: skip
        if kind.high is not None:
            options.append(st.floats(min_value=kind.high, exclude_min=True, allow_nan=False,
                                     allow_infinity=False))  # fmt: skip
        options.append(st.sampled_from(["1", True, [1.0, 2.0]]))
    elif isinstance(kind, Choice):
        options.append(st.text(max_size=8).filter(
            lambda t: t.strip() not in kind.values and (t.strip() or not blank_unset)))  # fmt: skip
        options.append(st.integers() | st.booleans())
    elif isinstance(kind, Switch):
        options.append(st.integers().filter(lambda n: n not in (0, 1)))
        options.append(st.sampled_from(["yes", "true", "on"]))
    elif isinstance(kind, Text):
        options.append(_NOT_TEXT)
        if kind.forbid:
            options.append(st.sampled_from([f"a{c}b" for c in kind.forbid]))
        if not kind.empty and wrong_type is not None:
            options.append(st.just(""))
    else:
        return None
    return st.one_of(options)


def _invalid_cases(cls: type) -> list[tuple[str, Spec]]:
    return [
        (name, s) for name, s in specs(cls).items()
        if kind_invalid(s.kind, blank_unset=s.blank_unset) is not None
    ]  # fmt: skip


@st.composite
def invalid_fields(draw: st.DrawFn, cls: type) -> tuple[str, Any]:
    name, field_spec = draw(st.sampled_from(_invalid_cases(cls)))
    strategy = kind_invalid(field_spec.kind, blank_unset=field_spec.blank_unset)
    assert strategy is not None
    value = draw(strategy)
    if field_spec.sweep and isinstance(value, list):
        assume(value)  # a list is a sweep: each item is checked on its own
    return name, value


@pytest.mark.parametrize("cls", [ServerConfig, BenchConfig], ids=lambda c: c.__name__)
@given(data=st.data())
def test_an_invalid_value_is_refused_by_the_schema_and_by_the_library(
    cls: type, data: st.DataObject
) -> None:
    name, value = data.draw(invalid_fields(cls))
    body = {name: value}
    assert schema_errors(cls, body), body
    with pytest.raises(ConfigValidationError) as caught:
        from_data(cls, body)
    assert {path.split("[")[0] for path, _ in caught.value.errors} == {name}


@given(data=st.data())
def test_an_invalid_setting_is_refused_by_the_schema_and_by_the_library(
    data: st.DataObject,
) -> None:
    name, value = data.draw(invalid_fields(Settings))
    assume(not (isinstance(value, float) and math.isnan(value)))
    assert schema_errors(Settings, {name: value}), (name, value)
    with pytest.raises(LlamaSwitchError, match=specs(Settings)[name].env or name):
        Settings(**{name: value})


@pytest.mark.parametrize("cls", [ServerConfig, BenchConfig], ids=lambda c: c.__name__)
def test_an_unknown_key_is_refused_by_both(cls: type) -> None:
    assert schema_errors(cls, {"threadz": 2})
    with pytest.raises(ConfigValidationError, match="threadz"):
        from_data(cls, {"threadz": 2})


@pytest.mark.parametrize(
    ("cls", "body"),
    [
        (ServerConfig, {"port": 22}),
        (ServerConfig, {"port": 65536}),
        (ServerConfig, {"threads": 0}),
        (ServerConfig, {"rope_freq_base": 0}),
        (ServerConfig, {"rope_freq_base": -1.5}),
        (ServerConfig, {"cache_type_k": "f8"}),
        (ServerConfig, {"n_gpu_layers": "most"}),
        (ServerConfig, {"flash_attn": "yes"}),
        (ServerConfig, {"extra_args": "--props"}),
        (BenchConfig, {"poll": 101}),
        (BenchConfig, {"n_prompt": [16, -1]}),
        (BenchConfig, {"n_prompt": []}),
        (BenchConfig, {"cpu_mask": "0xzz"}),
        (BenchConfig, {"devices": "a,b"}),
        (BenchConfig, {"output": "html"}),
        (BenchConfig, {"priority": 4}),
    ],
)  # fmt: skip
def test_known_bad_bodies_are_refused_by_both(cls: type, body: dict[str, Any]) -> None:
    assert schema_errors(cls, body), body
    with pytest.raises(ConfigValidationError):
        from_data(cls, body)
