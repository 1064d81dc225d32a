"""ServerConfig: validation, the seed's JSON bodies, and argv in both flag dialects.

The argv is built only through a ``Capabilities`` record. Most tests read the help texts
captured from the real builds (``tests/data/help``); the ``llama_build`` tests use the
binaries themselves. The Hypothesis round trip parses the argv back through the same
record (``argv_to_settings`` below, written independently of the builder) and checks that
it says what the config said.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch._capabilities import Capabilities, Flag
from llamaswitch._errors import ConfigValidationError, UnsupportedOptionError
from llamaswitch.servers.config import (
    CACHE_TYPES,
    FORBIDDEN_FLAGS,
    SPLIT_MODES,
    ServerConfig,
    env_problem,
)

from .conftest import LlamaBuild
from .helpers import captured_caps

DIALECTS = ("legacy", "current")
MODEL = "/models/tiny.gguf"


CAPS = {d: captured_caps(d) for d in DIALECTS}


def args(config: ServerConfig, dialect: str) -> list[str]:
    """The argv without the model, host and port, which every argv starts with."""
    argv = config.to_argv(CAPS[dialect], MODEL, "127.0.0.1", 8091)
    assert argv[:6] == ["--model", MODEL, "--host", "127.0.0.1", "--port", "8091"]
    return argv[6:]


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 0), ("port", 70000), ("port", "8080"), ("threads", 0), ("threads", True),
        ("threads", 2.5), ("threads_batch", -1), ("ctx_size", -1), ("batch_size", 0),
        ("ubatch_size", 0), ("n_gpu_layers", -2), ("n_gpu_layers", "most"),
        ("flash_attn", "yes"), ("flash_attn", 2), ("split_mode", "diagonal"),
        ("tensor_split", "a,b"), ("tensor_split", [0.5, -1]), ("tensor_split", []),
        ("tensor_split", "0,0"), ("main_gpu", -1), ("mlock", "true"), ("no_mmap", 2),
        ("cache_type_k", "f8"), ("cache_type_v", "Q8_0"), ("parallel", 0), ("alias", ""),
        ("host", "127.0.0.1 8080"), ("host", ""), ("restart", "always"),
        ("extra_args", "--props"), ("extra_args", [1]), ("env", ["A=1"]),
        ("restart_max", -1), ("restart_max", 1001), ("restart_max", 1.5),
        ("restart_max", True), ("restart_backoff_s", -0.5), ("restart_backoff_s", math.nan),
        ("restart_backoff_s", math.inf), ("restart_backoff_s", "1"),
        ("restart_backoff_s", 3601),
    ],
)  # fmt: skip
def test_invalid_value_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig(**{field: value})
    assert [path for path, _ in caught.value.errors] == [field]
    assert str(caught.value).startswith(f"{field}: ")


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig(threads=0, ctx_size=-5, cache_type_k="f8")
    assert [path for path, _ in caught.value.errors] == ["threads", "ctx_size", "cache_type_k"]


def test_unset_fields_are_none_and_pass_nothing() -> None:
    config = ServerConfig()
    assert config.threads is None
    assert config.to_dict() == {}  # restart="no" is the default: not written
    for dialect in DIALECTS:
        assert args(config, dialect) == []


@pytest.mark.parametrize(
    "flag",
    ["-m", "--model", "--host", "--port", "--port=8080", "--models-dir", "-hf", "--hf-repo",
     "--model-url", "--path", "--tools", "--gpt-oss-20b-default", "--help", "-mm",
     "--mmproj", "-md", "--model-draft", "--spec-draft-model", "-mv", "--model-vocoder",
     "--lora", "--lora-scaled", "--control-vector", "--control-vector-scaled", "-jf",
     "--video-ffmpeg-dir", "--media-path", "--log-prompts-dir", "-hfd", "--cache-list"],
)  # fmt: skip
def test_extra_args_may_not_carry_flags_the_supervisor_controls(flag: str) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig(extra_args=["--props", flag, "x"])
    assert caught.value.errors[0][0] == "extra_args"
    assert flag.split("=", maxsplit=1)[0] in str(caught.value)


def test_extra_args_come_last_as_given() -> None:
    config = ServerConfig(threads=2, extra_args=["--props", "--timeout", "30"])
    for dialect in DIALECTS:
        assert args(config, dialect) == ["--threads", "2", "--props", "--timeout", "30"]


# A value placeholder that names a file or a folder.
_PATH_METAVAR = re.compile(r"FNAME|FILE|PATH|DIR")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_flag_that_takes_a_file_or_folder_is_refused_in_extra_args(dialect: str) -> None:
    """Whatever reads or writes a path (a projector, a LoRA, a draft model, a log...) could
    reach any file the server's user can: only the catalog-checked model is passed."""
    taking_paths = {
        name
        for flag in CAPS[dialect].flags.values()
        if flag.metavar and _PATH_METAVAR.search(flag.metavar)
        for name in flag.names
    }
    assert {"--mmproj", "--lora", "--model-draft"} & taking_paths
    assert sorted(taking_paths - set(FORBIDDEN_FLAGS)) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_environment_twin_of_every_refused_flag_is_refused(dialect: str) -> None:
    twins = {
        name
        for flag in CAPS[dialect].flags.values()
        if any(n in FORBIDDEN_FLAGS for n in flag.names)
        for name in re.findall(r"\(env: (\w+)\)", flag.description)
    }
    assert "LLAMA_ARG_MODEL" in twins
    assert sorted(name for name in twins if env_problem(name) is None) == []


@pytest.mark.parametrize(
    "name",
    ["LLAMA_ARG_MODEL", "LLAMA_ARG_PORT", "llama_arg_host", "LLAMA_ARG_MMPROJ",
     "LLAMA_ARG_MODEL_DRAFT", "LLAMA_ARG_SPEC_DRAFT_MODEL", "LLAMA_ARG_CHAT_TEMPLATE_FILE"],
)  # fmt: skip
def test_env_may_not_set_what_the_supervisor_controls(name: str) -> None:
    with pytest.raises(ConfigValidationError, match=f"env: {name} is not allowed"):
        ServerConfig(env={name: "x"})


def test_lora_init_without_apply_takes_no_path_and_is_allowed() -> None:
    assert ServerConfig(extra_args=["--lora-init-without-apply"]).extra_args == (
        "--lora-init-without-apply",
    )


def test_restart_knobs_are_per_server_and_never_reach_the_argv() -> None:
    config = ServerConfig.from_dict(
        {"restart": "on-failure", "restart_max": 2, "restart_backoff_s": 1}
    )
    assert (config.restart_max, config.restart_backoff_s) == (2, 1.0)
    assert config.to_dict() == {"restart": "on-failure", "restart_max": 2,
                                "restart_backoff_s": 1.0}  # fmt: skip
    assert ServerConfig(restart_backoff_s=1) == ServerConfig(restart_backoff_s=1.0)
    for dialect in DIALECTS:
        assert args(config, dialect) == []


def test_env_is_read_only_and_kept() -> None:
    config = ServerConfig(env={"LLAMA_ARG_THREADS_HTTP": "2"})
    assert config.env == {"LLAMA_ARG_THREADS_HTTP": "2"}
    with pytest.raises(TypeError):
        config.env["X"] = "1"  # type: ignore[index]


def test_tensor_split_text_and_list_are_the_same() -> None:
    assert ServerConfig(tensor_split="0.5,0.5") == ServerConfig(tensor_split=[0.5, 0.5])
    assert ServerConfig(tensor_split="3/1").tensor_split == (3.0, 1.0)


def test_minus_one_gpu_layers_means_all() -> None:
    assert ServerConfig(n_gpu_layers=-1).n_gpu_layers == "all"


def test_zero_and_one_are_accepted_for_switches() -> None:
    config = ServerConfig(flash_attn=1, mlock=0, no_mmap=1)
    assert (config.flash_attn, config.mlock, config.no_mmap) == (True, False, True)


def test_gpu_layers_setting_is_the_default() -> None:
    assert ServerConfig().with_defaults(gpu_layers=20).n_gpu_layers == 20
    assert ServerConfig(n_gpu_layers=0).with_defaults(gpu_layers=20).n_gpu_layers == 0
    assert ServerConfig().with_defaults(gpu_layers=None).n_gpu_layers is None


def test_config_is_frozen_and_hashable() -> None:
    config = ServerConfig(threads=2, tensor_split="1,1", extra_args=["--props"])
    with pytest.raises(AttributeError):
        config.threads = 3  # type: ignore[misc]
    assert hash(config) == hash(ServerConfig(threads=2, tensor_split=[1, 1],
                                             extra_args=("--props",)))  # fmt: skip


# -- from_dict: the seed's JSON bodies -----------------------------------------------------

SEED_CONFIGS = {
    "switch": '{"port": 8080, "threads": 4, "ctx_size": 2048, "batch_size": 512}',
    "cpu": '{"host": "127.0.0.1", "port": 8080, "threads": 8, "ctx_size": 4096, "batch_size": 512}',
    "gpu": '{"host": "127.0.0.1", "port": 8080, "threads": 8, "n_gpu_layers": 99, '
    '"flash_attn": true, "batch_size": 2048, "ctx_size": 4096}',
    "multi_gpu": '{"host": "127.0.0.1", "port": 8080, "threads": 8, "n_gpu_layers": 99, '
    '"split_mode": "layer", "tensor_split": "0.5,0.5", "main_gpu": 0, "flash_attn": true}',
    "performance": '{"host": "127.0.0.1", "port": 8080, "threads": 32, "threads_batch": 32, '
    '"n_gpu_layers": 99, "flash_attn": true, "batch_size": 2048, "ubatch_size": 512, '
    '"ctx_size": 4096, "mlock": true, "cache_type_k": "f16", "cache_type_v": "f16"}',
}


@pytest.mark.parametrize("name", sorted(SEED_CONFIGS))
def test_seed_config_bodies_load_as_written(name: str) -> None:
    body = json.loads(SEED_CONFIGS[name])
    config = ServerConfig.from_dict(body)
    expected = {k: tuple(map(float, v.split(","))) if k == "tensor_split" else v
                for k, v in body.items()}  # fmt: skip
    assert {k: getattr(config, k) for k in body} == expected
    for dialect in DIALECTS:
        assert all(type(a) is str for a in config.to_argv(CAPS[dialect], MODEL, "::1", 1))


def test_from_dict_refuses_unknown_keys_by_name() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig.from_dict({"threads": 2, "thread": 2, "n_prompt": 512}, path="config")
    assert [p for p, _ in caught.value.errors] == ["config.n_prompt", "config.thread"]


def test_from_dict_prefixes_field_errors() -> None:
    with pytest.raises(ConfigValidationError, match=r"^config\.threads: must be a whole"):
        ServerConfig.from_dict({"threads": "4"}, path="config")


def test_from_dict_accepts_nothing_and_nulls() -> None:
    assert ServerConfig.from_dict(None) == ServerConfig()
    assert ServerConfig.from_dict({"threads": None, "restart": None}) == ServerConfig()


def test_to_dict_round_trips_through_from_dict() -> None:
    config = ServerConfig(threads=2, tensor_split="1,3", env={"CUDA_VISIBLE_DEVICES": "0"},
                          extra_args=["--props"], restart="on-failure")  # fmt: skip
    assert ServerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@given(st.dictionaries(st.text(max_size=12), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6), max_size=5))  # fmt: skip
def test_any_json_object_either_loads_or_raises_config_validation_error(
    body: dict[str, Any],
) -> None:
    errors: list[tuple[str, str]] = []
    try:
        ServerConfig.from_dict(body)
    except ConfigValidationError as exc:
        errors = exc.errors
        assert errors, "a validation error names at least one field"
    assert all(isinstance(path, str) and reason for path, reason in errors)


# -- argv per dialect ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "legacy", "current"),
    [
        (ServerConfig(flash_attn=True), ["-fa"], ["-fa", "on"]),
        (ServerConfig(flash_attn="on"), ["-fa"], ["-fa", "on"]),
        (ServerConfig(flash_attn=False), [], ["-fa", "off"]),
        (ServerConfig(mlock=True), ["--mlock"], ["--load-mode", "mmap+mlock"]),
        (ServerConfig(no_mmap=True), ["--no-mmap"], ["--load-mode", "none"]),
        (ServerConfig(mlock=True, no_mmap=True), ["--mlock", "--no-mmap"],
         ["--load-mode", "mlock"]),
        (ServerConfig(mlock=False, no_mmap=False), [], []),
        (ServerConfig(n_gpu_layers=99), ["--gpu-layers", "99"], ["--gpu-layers", "99"]),
        (ServerConfig(n_gpu_layers="all"), ["--gpu-layers", "99999"], ["--gpu-layers", "all"]),
        (ServerConfig(split_mode="row", tensor_split="0.5,0.5", main_gpu=1),
         ["--split-mode", "row", "--tensor-split", "0.5,0.5", "--main-gpu", "1"],
         ["--split-mode", "row", "--tensor-split", "0.5,0.5", "--main-gpu", "1"]),
        (ServerConfig(cache_type_k="q8_0", cache_type_v="q4_0", parallel=2, alias="m"),
         ["--cache-type-k", "q8_0", "--cache-type-v", "q4_0", "--parallel", "2", "--alias", "m"],
         ["--cache-type-k", "q8_0", "--cache-type-v", "q4_0", "--parallel", "2", "--alias", "m"]),
    ],
)  # fmt: skip
def test_argv_in_each_dialect(config: ServerConfig, legacy: list[str], current: list[str]) -> None:
    assert args(config, "legacy") == legacy
    assert args(config, "current") == current


@pytest.mark.parametrize(
    ("field", "value"),
    [("split_mode", "tensor"), ("flash_attn", "auto"), ("n_gpu_layers", "auto")],
)
def test_legacy_refuses_what_it_cannot_honour_naming_its_version(field: str, value: object) -> None:
    config = ServerConfig(**{field: value})
    with pytest.raises(UnsupportedOptionError) as caught:
        args(config, "legacy")
    assert caught.value.field == field
    assert "llama-server legacy build" in str(caught.value)
    assert args(config, "current")  # the current build takes it


def test_windows_model_path_is_passed_verbatim() -> None:
    argv = ServerConfig().to_argv(CAPS["current"], r"C:\Models\tiny.gguf", "127.0.0.1", 8091)
    assert argv[:2] == ["--model", r"C:\Models\tiny.gguf"]


@pytest.mark.real_binary
def test_real_binary_gets_its_own_dialect(llama_build: LlamaBuild) -> None:
    info = llama_build.server
    argv = ServerConfig(flash_attn=True, mlock=True).to_argv(info, MODEL, "127.0.0.1", 8091)
    if info.dialect == "legacy":
        assert argv[6:] == ["-fa", "--mlock"]
    else:
        assert argv[6:] == ["-fa", "on", "--load-mode", "mmap+mlock"]


@pytest.mark.real_binary
def test_real_legacy_binary_refuses_tensor_split_mode_naming_its_version(
    llama_build: LlamaBuild,
) -> None:
    info = llama_build.server
    config = ServerConfig(split_mode="tensor")
    if info.dialect == "current":
        assert config.to_argv(info, MODEL, "127.0.0.1", 8091)[-2:] == ["--split-mode", "tensor"]
        return
    with pytest.raises(UnsupportedOptionError) as caught:
        config.to_argv(info, MODEL, "127.0.0.1", 8091)
    assert info.version in str(caught.value)


# -- Hypothesis: argv -> settings -> the same config -----------------------------------------

_FIELD_FLAGS = {
    "threads": "--threads", "threads_batch": "--threads-batch", "ctx_size": "--ctx-size",
    "batch_size": "--batch-size", "ubatch_size": "--ubatch-size", "main_gpu": "--main-gpu",
    "cache_type_k": "--cache-type-k", "cache_type_v": "--cache-type-v",
    "parallel": "--parallel", "alias": "--alias", "n_gpu_layers": "--gpu-layers",
    "split_mode": "--split-mode", "tensor_split": "--tensor-split", "flash_attn": "-fa",
    "mlock": "--mlock", "no_mmap": "--no-mmap", "load_mode": "--load-mode",
    "model": "--model", "host": "--host", "port": "--port", "rope_freq_base": "--rope-freq-base",
}  # fmt: skip
_INT_FIELDS = {"threads", "threads_batch", "ctx_size", "batch_size", "ubatch_size", "main_gpu",
               "parallel", "port"}  # fmt: skip
_LOAD_MODES = {"mmap+mlock": (True, None), "mlock": (True, True), "none": (None, True)}


def argv_to_settings(argv: Sequence[str], caps: Capabilities) -> dict[str, Any]:
    """Read an argv back into settings, recognising flags through the capability record."""
    by_flag: dict[Flag, str] = {}
    for field, name in _FIELD_FLAGS.items():
        flag = caps.flag(name)
        if flag is not None:
            by_flag[flag] = field
    settings: dict[str, Any] = {}
    extra: list[str] = []
    i = 0
    while i < len(argv):
        flag = caps.flags.get(argv[i])
        field = by_flag.get(flag) if flag is not None and not extra else None
        if field is None or flag is None:
            extra.append(argv[i])
            i += 1
            continue
        value = argv[i + 1] if flag.takes_value else None
        i += 2 if flag.takes_value else 1
        if field in ("mlock", "no_mmap"):
            settings[field] = True
        elif field == "load_mode":
            assert value is not None
            mlock, no_mmap = _LOAD_MODES[value]
            settings.update({k: v for k, v in (("mlock", mlock), ("no_mmap", no_mmap)) if v})
        elif field == "flash_attn":
            settings[field] = "on" if value is None else {"1": "on", "0": "off"}.get(value, value)
        elif field == "n_gpu_layers":
            assert value is not None
            settings[field] = "all" if value == "99999" else (int(value) if value.isdigit()
                                                              else value)  # fmt: skip
        elif field == "tensor_split":
            assert value is not None
            settings[field] = tuple(float(v) for v in value.split(","))
        elif field == "rope_freq_base":
            assert value is not None
            settings[field] = float(value)
        elif field in _INT_FIELDS:
            assert value is not None
            settings[field] = int(value)
        else:
            settings[field] = value
    if extra:
        settings["extra_args"] = tuple(extra)
    return settings


def expected_settings(config: ServerConfig, dialect: str) -> dict[str, Any]:
    """What an argv for ``dialect`` should say: the set fields, in their argv meaning."""
    settings: dict[str, Any] = {"model": MODEL, "host": config.host or "127.0.0.1",
                                "port": config.port or 8091}  # fmt: skip
    for field in _FIELD_FLAGS:
        value = getattr(config, field, None)
        if value is None or value is False:
            continue  # unset, or a switch that is off (= not passed)
        settings[field] = value
    if isinstance(config.flash_attn, bool | str):
        word = {True: "on", False: "off"}.get(config.flash_attn, config.flash_attn)  # type: ignore[call-overload]
        settings["flash_attn"] = word
        if dialect == "legacy" and word == "off":
            del settings["flash_attn"]  # legacy: off is the default, nothing is passed
    if config.extra_args:
        settings["extra_args"] = config.extra_args
    return settings


def legacy_cannot(config: ServerConfig) -> bool:
    return (config.split_mode == "tensor" or config.flash_attn == "auto"
            or config.n_gpu_layers == "auto")  # fmt: skip


small = st.integers(min_value=1, max_value=4096)
configs = st.builds(
    ServerConfig,
    host=st.none() | st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "localhost"]),
    port=st.none() | st.integers(1024, 65535),
    threads=st.none() | small,
    threads_batch=st.none() | small,
    ctx_size=st.none() | st.integers(0, 2**31 - 1),
    batch_size=st.none() | st.integers(1, 2**31 - 1),
    ubatch_size=st.none() | st.integers(1, 2**31 - 1),
    n_gpu_layers=st.none() | st.integers(0, 9999) | st.sampled_from(["all", "auto", -1]),
    flash_attn=st.none() | st.booleans() | st.sampled_from(["on", "off", "auto"]),
    split_mode=st.none() | st.sampled_from(SPLIT_MODES),
    tensor_split=st.none() | st.lists(
        st.floats(0, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=8
    ).filter(lambda v: any(x > 0 for x in v)),
    main_gpu=st.none() | st.integers(0, 1023),
    mlock=st.none() | st.booleans(),
    cache_type_k=st.none() | st.sampled_from(CACHE_TYPES),
    cache_type_v=st.none() | st.sampled_from(CACHE_TYPES),
    parallel=st.none() | small,
    alias=st.none() | st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
    ),
    no_mmap=st.none() | st.booleans(),
    rope_freq_base=st.none() | st.floats(0, 1e30, exclude_min=True, allow_nan=False),
    extra_args=st.lists(
        st.sampled_from([("--props",), ("--props",), ("--timeout", "30")]), max_size=3
    ).map(lambda parts: tuple(a for p in parts for a in p)),
    env=st.dictionaries(st.sampled_from(["CUDA_DEVICE_ORDER", "LLAMA_ARG_THREADS_HTTP"]), st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))),
    restart=st.sampled_from(["no", "on-failure"]),
    restart_max=st.none() | st.integers(0, 1000),
    restart_backoff_s=st.none() | st.floats(0, 3600),
)  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS)
@given(config=configs)
def test_argv_maps_back_to_the_same_settings(dialect: str, config: ServerConfig) -> None:
    caps = CAPS[dialect]
    host, port = config.host or "127.0.0.1", config.port or 8091
    if dialect == "legacy" and legacy_cannot(config):
        with pytest.raises(UnsupportedOptionError, match="legacy build"):
            config.to_argv(caps, MODEL, host, port)
        return
    argv = config.to_argv(caps, MODEL, host, port)
    assert isinstance(argv, list)
    assert all(type(a) is str for a in argv)
    assert argv_to_settings(argv, caps) == expected_settings(config, dialect)


def _mapping_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return dict(a) == dict(b)


@given(config=configs)
def test_wire_form_round_trips(config: ServerConfig) -> None:
    again = ServerConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert _mapping_equal(again.env, config.env)
