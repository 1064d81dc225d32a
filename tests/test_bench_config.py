"""BenchConfig: the seed's benchmark request, its validation, argv per dialect, test counts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest

from llamaswitch._errors import ConfigValidationError, UnsupportedOptionError
from llamaswitch.bench.config import MAX_BENCH_TESTS, BenchConfig
from llamaswitch.bench.parser import parse_jsonl_line, parse_progress_line
from tests.conftest import LlamaBuild

# The seed's first benchmark body (POST /api/v1/benchmark), comments removed, as written.
SEED_FULL_BODY = """{
    "n_prompt": 512, "n_gen": 128, "n_depth": 0, "batch_size": 2048, "ubatch_size": 512,
    "cache_type_k": "f16", "cache_type_v": "f16", "threads": 32, "cpu_mask": "",
    "cpu_strict": 0, "poll": 50, "n_gpu_layers": 99, "split_mode": "layer", "main_gpu": 0,
    "no_kv_offload": 0, "flash_attn": 0, "mmap": 1, "numa": "", "embeddings": 0,
    "tensor_split": "0", "repetitions": 5, "priority": 0, "delay": 0, "output": "md",
    "output_err": "none", "verbose": 0, "progress": 0
}"""

SEED_KEYS = (
    "n_prompt",
    "n_gen",
    "n_depth",
    "batch_size",
    "ubatch_size",
    "cache_type_k",
    "cache_type_v",
    "threads",
    "cpu_mask",
    "cpu_strict",
    "poll",
    "n_gpu_layers",
    "split_mode",
    "main_gpu",
    "no_kv_offload",
    "flash_attn",
    "mmap",
    "numa",
    "embeddings",
    "tensor_split",
    "repetitions",
    "priority",
    "delay",
    "output",
    "output_err",
    "verbose",
    "progress",
)


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    """The ConfigValidationError's reasons by field path."""
    with pytest.raises(ConfigValidationError) as info:
        BenchConfig.from_dict(data)
    return dict(info.value.errors)


# -- loading --------------------------------------------------------------------------------


def test_config_has_every_key_of_the_seed_request() -> None:
    config = BenchConfig.from_dict(json.loads(SEED_FULL_BODY))
    assert len(SEED_KEYS) == 27
    assert set(SEED_KEYS) <= {field.name for field in attrs.fields(BenchConfig)}
    assert config.n_prompt == (512,)
    assert config.flash_attn == (False,)
    assert config.mmap == (True,)


def test_seed_body_empty_strings_mean_unset() -> None:
    config = BenchConfig.from_dict(json.loads(SEED_FULL_BODY))
    assert config.cpu_mask is None
    assert config.numa is None
    assert "cpu_mask" not in config.to_dict()
    assert config.tensor_split == ("0",)
    assert config.output_err == "none"


def test_to_dict_writes_one_value_sweeps_as_the_value_and_round_trips() -> None:
    config = BenchConfig(n_prompt=[16, 32], n_gen=8, threads=2, pg="16,8", flash_attn="auto")
    data = config.to_dict()
    assert data == {
        "n_prompt": [16, 32],
        "n_gen": 8,
        "pg": [16, 8],
        "threads": 2,
        "flash_attn": "auto",
    }
    assert BenchConfig.from_dict(json.loads(json.dumps(data))) == config


def test_list_params_take_one_value_or_a_list() -> None:
    assert BenchConfig(threads=4).threads == (4,)
    assert BenchConfig(threads=[1, 2, 4]).threads == (1, 2, 4)
    assert BenchConfig(cache_type_k=["f16", "q8_0"]).cache_type_k == ("f16", "q8_0")
    assert BenchConfig(flash_attn=[0, 1]).flash_attn == (False, True)
    assert BenchConfig(pg=[[512, 128], "1024,256"]).pg == ((512, 128), (1024, 256))


def test_flash_attn_accepts_the_seed_01_and_current_words() -> None:
    assert BenchConfig(flash_attn=1).flash_attn == (True,)
    assert BenchConfig(flash_attn="on").flash_attn == (True,)
    assert BenchConfig(flash_attn="off").flash_attn == (False,)
    assert BenchConfig(flash_attn="auto").flash_attn == ("auto",)


# -- validation -----------------------------------------------------------------------------


def test_unknown_field_is_rejected_by_name() -> None:
    errors = errors_of({"n_prompt": 16, "ctx_size": 4096})
    assert list(errors) == ["ctx_size"]
    assert "unknown field" in errors["ctx_size"]


def test_poll_outside_0_to_100_is_rejected() -> None:
    assert "from 0 to 100" in errors_of({"poll": 101})["poll"]
    assert "from 0 to 100" in errors_of({"poll": -1})["poll"]
    assert BenchConfig(poll=100).poll == (100,)


def test_priority_outside_0_to_3_is_rejected() -> None:
    assert "from 0 to 3" in errors_of({"priority": 4})["priority"]


@pytest.mark.parametrize(
    "field", ["cpu_strict", "no_kv_offload", "mmap", "embeddings", "verbose", "progress"]
)
def test_switches_take_only_0_or_1(field: str) -> None:
    assert "0 or 1" in errors_of({field: 2})[field]
    assert "0 or 1" in errors_of({field: "yes"})[field]


def test_bad_cache_type_is_rejected_with_the_allowed_ones() -> None:
    reason = errors_of({"cache_type_k": "f8"})["cache_type_k"]
    assert "f16" in reason
    assert "q8_0" in reason


def test_bad_split_mode_and_output_format_are_rejected() -> None:
    errors = errors_of({"split_mode": "rows", "output": "xml", "output_err": "yaml"})
    assert set(errors) == {"split_mode", "output", "output_err"}
    assert "md, csv, json, jsonl, sql" in errors["output"]


def test_cpu_mask_must_be_hex() -> None:
    assert "hexadecimal" in errors_of({"cpu_mask": "0xZZ"})["cpu_mask"]
    assert BenchConfig(cpu_mask="0xff").cpu_mask == ("0xff",)
    assert BenchConfig(cpu_mask="ff").cpu_mask == ("ff",)


def test_seed_cpu_mask_comma_string_is_a_sweep_of_masks(llama_build: LlamaBuild) -> None:
    config = BenchConfig.from_dict({"cpu_mask": "0xff,0x0f"})  # the seed's "(hex,hex)"

    assert config.cpu_mask == ("0xff", "0x0f")
    assert config.to_dict() == {"cpu_mask": ["0xff", "0x0f"]}
    argv = config.to_argv(llama_build.bench.capabilities, "/m/t.gguf")
    assert argv[argv.index("-C") + 1] == "0xff,0x0f"


def test_each_mask_of_a_cpu_mask_comma_string_is_validated() -> None:
    errors = errors_of({"cpu_mask": "0xff, 0xZZ"})

    assert set(errors) == {"cpu_mask[1]"}
    assert "'0xZZ'" in errors["cpu_mask[1]"]


def test_every_bad_field_is_named_in_one_error() -> None:
    errors = errors_of(
        {"poll": 101, "cache_type_v": "f8", "threads": [1, 0], "bogus": 1, "tensor_split": "a,b"}
    )
    assert set(errors) == {"poll", "cache_type_v", "threads[1]", "bogus", "tensor_split"}


def test_wrong_types_are_named() -> None:
    errors = errors_of({"threads": "4", "n_prompt": 1.5, "repetitions": True})
    assert set(errors) == {"threads", "n_prompt", "repetitions"}


def test_single_value_fields_reject_lists() -> None:
    assert "one value" in errors_of({"repetitions": [1, 2]})["repetitions"]


def test_empty_sweep_is_rejected() -> None:
    assert "empty" in errors_of({"threads": []})["threads"]


def test_mmap_and_load_mode_together_are_rejected() -> None:
    assert "load_mode" in errors_of({"mmap": 1, "load_mode": "mmap"})


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigValidationError, match="poll"):
        BenchConfig(poll=101)


def test_from_dict_requires_an_object() -> None:
    with pytest.raises(ConfigValidationError, match="JSON object"):
        BenchConfig.from_dict([1, 2])  # type: ignore[arg-type]


# -- expected tests -------------------------------------------------------------------------


def test_expected_tests_of_the_issue_sweep() -> None:
    config = BenchConfig(threads=[1, 2], n_prompt=[16, 32], n_gen=8)
    assert config.expected_tests() == 6
    assert config.expected_test_names() == ["pp16", "pp32", "tg8"] * 2


def test_expected_tests_use_llama_bench_defaults_for_unset_sizes() -> None:
    assert BenchConfig().expected_test_names() == ["pp512", "tg128"]
    assert BenchConfig(pg="16,8").expected_test_names() == ["pp512", "tg128", "pp16+tg8"]
    assert BenchConfig(n_prompt=0, n_gen=8).expected_test_names() == ["tg8"]


def test_expected_tests_name_depths_as_llama_bench_does() -> None:
    config = BenchConfig(n_prompt=16, n_gen=0, n_depth=[0, 32])
    assert config.expected_test_names() == ["pp16", "pp16 @ d32"]


def test_a_sweep_at_the_test_limit_is_accepted() -> None:
    config = BenchConfig(n_prompt=list(range(1, 101)), n_gen=0, threads=list(range(1, 101)))

    assert config.expected_tests() == MAX_BENCH_TESTS == 10_000


def test_an_oversized_sweep_is_refused_without_listing_its_tests() -> None:
    # A few hundred bytes of JSON asking for 20 tests x 10**8 combinations: listing their
    # names would take minutes and gigabytes; counting them takes no time.
    swept = ("n_depth", "poll", "batch_size", "ubatch_size", "threads", "n_gpu_layers")
    body: dict[str, Any] = {name: list(range(1, 11)) for name in (*swept, "n_prompt", "n_gen")}
    body["main_gpu"] = body["n_cpu_moe"] = list(range(10))

    errors = errors_of(body)

    assert set(errors) == {"config"}
    assert "2,000,000,000 tests" in errors["config"]
    assert "at most 10,000" in errors["config"]


# -- argv -----------------------------------------------------------------------------------


def test_unset_fields_are_not_passed(llama_build: LlamaBuild) -> None:
    caps = llama_build.bench.capabilities
    assert BenchConfig().to_argv(caps, "/m/tiny.gguf") == ["-m", "/m/tiny.gguf"]


def test_seed_body_maps_to_each_dialect(llama_build: LlamaBuild) -> None:
    config = BenchConfig.from_dict(json.loads(SEED_FULL_BODY))
    argv = config.to_argv(llama_build.bench.capabilities, "/m/tiny.gguf")
    pairs = dict(zip(argv[::2], argv[1::2], strict=False))
    assert pairs["-m"] == "/m/tiny.gguf"
    assert pairs["-ngl"] == "99"
    assert pairs["-sm"] == "layer"
    assert pairs["-oe"] == "none"
    if llama_build.bench.dialect == "legacy":
        assert pairs["-fa"] == "0"
        assert pairs["-mmp"] == "1"
    else:
        assert pairs["-fa"] == "off"
        assert pairs["-lm"] == "mmap"
    assert "-C" not in argv
    assert "--numa" not in argv
    assert "--progress" not in argv  # progress: 0
    assert "-v" not in argv


def test_structured_stderr_replaces_output_err_and_progress(llama_build: LlamaBuild) -> None:
    config = BenchConfig(n_prompt=16, output="csv", output_err="md", progress=0)
    argv = config.to_argv(llama_build.bench.capabilities, "/m/t.gguf", structured_stderr=True)
    assert argv[-3:] == ["--progress", "-oe", "jsonl"]
    assert argv.count("-oe") == 1
    assert argv[argv.index("-o") : argv.index("-o") + 2] == ["-o", "csv"]


def test_sweeps_are_comma_lists(llama_build: LlamaBuild) -> None:
    config = BenchConfig(threads=[1, 2], flash_attn=[0, 1], n_prompt=[16, 32])
    argv = config.to_argv(llama_build.bench.capabilities, "/m/t.gguf")
    assert argv[argv.index("-t") + 1] == "1,2"
    assert argv[argv.index("-p") + 1] == "16,32"
    expected_fa = "0,1" if llama_build.bench.dialect == "legacy" else "off,on"
    assert argv[argv.index("-fa") + 1] == expected_fa


def test_seed_tensor_split_is_passed_as_one_split(llama_build: LlamaBuild) -> None:
    argv = BenchConfig(tensor_split="0.5,0.5").to_argv(llama_build.bench.capabilities, "m")
    assert argv[-2:] == ["-ts", "0.5/0.5"]
    argv = BenchConfig(tensor_split=["1,0", "0.5/0.5"]).to_argv(llama_build.bench.capabilities, "m")
    assert argv[-2:] == ["-ts", "1/0,0.5/0.5"]


def test_pg_sweep_repeats_the_flag(llama_build: LlamaBuild) -> None:
    argv = BenchConfig(pg=[[16, 8], [32, 4]]).to_argv(llama_build.bench.capabilities, "m")
    assert argv[2:] == ["-pg", "16,8", "-pg", "32,4"]


def test_f32_cache_is_refused_by_llama_bench_with_its_version(llama_build: LlamaBuild) -> None:
    # The seed documents f16/f32, but llama-bench's parser knows no f32 in either build.
    with pytest.raises(UnsupportedOptionError) as info:
        BenchConfig(cache_type_k="f32").to_argv(llama_build.bench.capabilities, "m")
    assert llama_build.bench.version in str(info.value)
    assert "cache_type_k" in str(info.value)


def test_current_only_options_are_refused_by_legacy(llama_build: LlamaBuild) -> None:
    caps = llama_build.bench.capabilities
    current_only = [
        BenchConfig(load_mode="mmap"),
        BenchConfig(n_cpu_moe=2),
        BenchConfig(flash_attn="auto"),
        BenchConfig(split_mode="tensor"),
        BenchConfig(no_warmup=True),
        BenchConfig(devices="none"),
    ]
    for config in current_only:
        if llama_build.bench.dialect == "legacy":
            with pytest.raises(UnsupportedOptionError) as info:
                config.to_argv(caps, "m")
            assert llama_build.bench.version in str(info.value)
        else:
            assert len(config.to_argv(caps, "m")) > 2


# -- expected tests against the real llama-bench ------------------------------------------

COUNT_CASES = [
    {"threads": [1, 2], "n_prompt": [16, 32], "n_gen": 8},
    {"n_prompt": 16, "n_gen": [4, 8], "pg": [[8, 4], [16, 0]], "n_depth": [0, 8]},
    {"n_prompt": [0, 16], "n_gen": 0, "poll": [0, 50], "batch_size": [16, 32]},
    {
        "n_prompt": 8,
        "n_gen": 4,
        "cache_type_k": ["f16", "bf16"],
        "flash_attn": [0, 1],
        "mmap": [0, 1],
    },
    {
        "n_prompt": 8,
        "n_gen": 4,
        "cpu_strict": [0, 1],
        "ubatch_size": [8, 16],
        "no_kv_offload": [0, 1],
        "embeddings": [0, 1],
    },
]


@pytest.mark.real_binary
@pytest.mark.parametrize("case", COUNT_CASES, ids=range(len(COUNT_CASES)))
def test_expected_tests_match_real_llama_bench(
    llama_build: LlamaBuild, tiny_model_file: Path, case: dict[str, Any]
) -> None:
    config = BenchConfig.from_dict({**case, "repetitions": 1})
    argv = config.to_argv(llama_build.bench.capabilities, tiny_model_file, structured_stderr=True)
    run = subprocess.run(
        [str(llama_build.bench.path), *argv, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = run.stderr.splitlines()
    results = [r for r in map(parse_jsonl_line, lines) if r is not None]
    totals = {p[1] for p in map(parse_progress_line, lines) if p is not None}
    assert totals == {config.expected_tests()}
    assert [r.test for r in results] == config.expected_test_names()
