"""The search space of a tune: written in BenchConfig's vocabulary, derived from the model
and the binaries, refused by field when it cannot be honoured; what is pruned before it
runs; and how each tuned field becomes a preset's llama-server setting.

Capability records here are the real binaries' ``--help`` texts (``tests/data/help``);
the tests that run llama-bench are in ``tests/test_tune.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import ConfigValidationError, UnsupportedOptionError
from llamaswitch.bench.config import BenchConfig
from llamaswitch.gateway.policy import Budget
from llamaswitch.servers.config import ServerConfig
from llamaswitch.tuning.feasibility import Feasibility
from llamaswitch.tuning.mapping import TUNABLE_FIELDS, owned_keys, to_server_config
from llamaswitch.tuning.objective import Objective
from llamaswitch.tuning.space import Dimension, TuneSpace, check_space, default_space

from .helpers import captured_caps


def model(**header: Any) -> ModelInfo:
    """A model as the catalog describes it (what the derivation reads)."""
    values: dict[str, Any] = {
        "name": "m.gguf", "path": Path("m.gguf"), "size": 512 * 1024 * 1024,
        "relative_path": "m.gguf", "block_count": 8, "embedding_length": 1024,
        "head_count": 8, "head_count_kv": 8, "vocab_size": 32000, "context_length": 4096,
    }  # fmt: skip
    values.update(header)
    return ModelInfo(**values)


def derived(generation: str, info: ModelInfo, **machine: Any) -> dict[str, Any]:
    settings = {"physical_cores": 4, "gpu_count": 0, "objective": Objective(), **machine}
    return default_space(info, bench=captured_caps(generation, "bench"),
                         server=captured_caps(generation, "server"), **settings)  # fmt: skip


# -- the space in BenchConfig's vocabulary ----------------------------------------------


def test_a_field_with_several_values_is_a_dimension_and_one_value_is_fixed() -> None:
    space = TuneSpace.from_data({"threads": [1, 2, 4], "batch_size": 256, "flash_attn": [0, 1]})
    assert [(d.name, d.values) for d in space.dimensions] == [
        ("threads", (1, 2, 4)), ("flash_attn", (False, True))]  # fmt: skip
    assert dict(space.fixed) == {"batch_size": 256}
    assert space.size == 6
    assert len(list(space.points())) == 6
    assert space.to_data() == {"threads": [1, 2, 4], "batch_size": 256, "flash_attn": [False, True]}


def test_a_benchconfig_sweep_is_a_space_too() -> None:
    space = TuneSpace.from_config(BenchConfig(threads=[1, 2], ubatch_size=[64, 128]))
    assert space.to_data() == {"threads": [1, 2], "ubatch_size": [64, 128]}


def test_repeated_values_count_once() -> None:
    space = TuneSpace.from_data({"threads": [2, 1, 2]})
    assert space.dimensions[0].values == (2, 1)


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TuneSpace.from_data({"threadz": [1, 2], "threads": [1, 2]})
    assert [path for path, _ in caught.value.errors] == ["space.threadz"]
    assert "tunable: threads, batch_size" in caught.value.errors[0][1]


def test_fields_a_preset_cannot_hold_or_the_objective_sets_are_refused_by_name() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TuneSpace.from_data({"poll": [0, 50], "n_prompt": [16, 32], "repetitions": 3,
                             "threads": [1, 2]})  # fmt: skip
    reasons = dict(caught.value.errors)
    assert set(reasons) == {"space.poll", "space.n_prompt", "space.repetitions"}
    assert "no llama-server setting" in reasons["space.poll"]
    assert "objective" in reasons["space.n_prompt"]


def test_a_bad_value_is_named_with_its_index_by_benchconfigs_own_rule() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TuneSpace.from_data({"threads": [1, 0], "cache_type_k": ["f16", "f8"]})
    paths = [path for path, _ in caught.value.errors]
    assert paths == ["space.threads[1]", "space.cache_type_k[1]"]


@pytest.mark.parametrize(
    ("space", "words"),
    [
        ({}, "names nothing to tune"),
        ({"threads": 2, "batch_size": 512}, "every field one value"),
    ],
    ids=["empty", "nothing-to-choose"],
)
def test_a_space_without_a_choice_is_refused_naming_space(
    space: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TuneSpace.from_data(space)
    [(path, reason)] = caught.value.errors
    assert path == "space"
    assert words in reason


def test_an_empty_list_is_refused_naming_its_field() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TuneSpace.from_data({"threads": []})
    assert caught.value.errors[0][0] == "space.threads"


def test_mmap_and_load_mode_together_are_refused() -> None:
    with pytest.raises(ConfigValidationError, match=r"space.load_mode"):
        TuneSpace.from_data({"mmap": [0, 1], "load_mode": ["mmap", "none"]})


@pytest.mark.parametrize(
    ("values", "step"),
    [((1, 2, 3, 4), 1), ((0, 4, 8), 4), ((1, 2), None), ((1, 2, 4, 8), None),
     ((3, 2, 1), None), ((True, False, True), None), ((128, 256, 384), 128)],
)  # fmt: skip
def test_an_even_rising_run_of_numbers_is_ordered_for_the_sampler(
    values: tuple[Any, ...], step: int | None
) -> None:
    assert Dimension("x", values).step == step


# -- what the binaries honour -----------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "field"),
    [
        ({"split_mode": ["layer", "tensor"]}, "split_mode"),
        ({"n_cpu_moe": [0, 2]}, "n_cpu_moe"),
        ({"load_mode": ["mmap", "none"]}, "load_mode"),
        ({"flash_attn": ["auto", True]}, "flash_attn"),
    ],
    ids=["split-tensor", "n_cpu_moe", "load_mode", "flash-auto"],
)
def test_a_space_the_legacy_build_cannot_honour_is_refused_naming_the_field(
    space: dict[str, Any], field: str
) -> None:
    with pytest.raises(UnsupportedOptionError) as caught:
        check_space(TuneSpace.from_data(space), bench=captured_caps("legacy", "bench"),
                    server=captured_caps("legacy", "server"), model=Path("m.gguf"),
                    base=ServerConfig())  # fmt: skip
    assert caught.value.field == field
    assert "legacy build" in str(caught.value)


def test_the_current_build_honours_what_the_legacy_one_refuses() -> None:
    space = TuneSpace.from_data({"split_mode": ["layer", "tensor"], "n_cpu_moe": [0, 2],
                                 "load_mode": ["mmap", "none"],
                                 "flash_attn": ["auto", True]})  # fmt: skip
    check_space(space, bench=captured_caps("current", "bench"),
                server=captured_caps("current", "server"), model=Path("m.gguf"),
                base=ServerConfig())  # fmt: skip


def test_a_load_mode_no_preset_can_hold_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        check_space(TuneSpace.from_data({"load_mode": ["mmap", "dio"]}),
                    bench=captured_caps("current", "bench"),
                    server=captured_caps("current", "server"), model=Path("m.gguf"),
                    base=ServerConfig())  # fmt: skip
    [(path, reason)] = caught.value.errors
    assert path == "space.load_mode"
    assert "dio" in reason


# -- the default space --------------------------------------------------------------------


def test_the_default_space_of_a_dense_model_on_a_cpu_machine() -> None:
    space = derived("current", model(), physical_cores=4)
    assert space == {
        "threads": [1, 2, 3, 4],
        "batch_size": [128, 256, 512],
        "ubatch_size": [64, 128, 256, 512],
        "flash_attn": [False, True],
        "cache_type_k": ["f16", "q8_0", "q4_0"],
        "cache_type_v": ["f16", "q8_0", "q4_0"],
        "load_mode": ["mmap", "none"],
    }


def test_threads_go_up_to_the_physical_cores() -> None:
    assert derived("current", model(), physical_cores=6)["threads"] == [1, 2, 3, 4, 5, 6]
    assert "threads" not in derived("current", model(), physical_cores=1)


def test_the_legacy_build_tunes_mmap_where_the_current_one_tunes_the_load_mode() -> None:
    space = derived("legacy", model())
    assert space["mmap"] == [True, False]
    assert "load_mode" not in space


def test_batch_sizes_stop_at_the_objectives_prompt_size() -> None:
    space = derived("current", model(), objective=Objective(n_prompt=256))
    assert space["batch_size"] == [128, 256]
    assert space["ubatch_size"] == [64, 128, 256]


def test_gpu_layers_are_tuned_only_where_a_gpu_exists_and_split_modes_with_two() -> None:
    assert "n_gpu_layers" not in derived("current", model())
    one = derived("current", model(block_count=8), gpu_count=1)
    assert one["n_gpu_layers"] == list(range(10))  # 0 ... 8 blocks + the output layer
    assert "split_mode" not in one
    two = derived("current", model(), gpu_count=2)
    assert two["split_mode"] == ["layer", "row", "tensor"]
    assert derived("legacy", model(), gpu_count=2)["split_mode"] == ["layer", "row"]


def test_experts_on_the_cpu_are_tuned_for_moe_models_on_builds_that_have_it() -> None:
    moe = model(expert_count=8, block_count=4)
    assert derived("current", moe)["n_cpu_moe"] == [0, 1, 2, 3, 4]
    assert "n_cpu_moe" not in derived("legacy", moe)
    assert "n_cpu_moe" not in derived("current", model())


def test_cache_types_are_only_those_the_models_head_size_allows() -> None:
    # A head of 16 (the tiny test models): no 32-element block divides it.
    space = derived("current", model(embedding_length=64, head_count=4))
    assert "cache_type_k" not in space
    assert "cache_type_v" not in space


def test_every_dimension_of_the_default_space_is_tunable_and_honoured() -> None:
    for generation in ("current", "legacy"):
        space = derived(generation, model(expert_count=4), gpu_count=2)
        assert set(space) <= set(TUNABLE_FIELDS)
        check_space(TuneSpace.from_data(space), bench=captured_caps(generation, "bench"),
                    server=captured_caps(generation, "server"), model=Path("m.gguf"),
                    base=ServerConfig())  # fmt: skip


# -- from llama-bench fields to a preset --------------------------------------------------


def test_each_tuned_field_becomes_its_llama_server_setting() -> None:
    point = {"threads": 4, "batch_size": 1024, "ubatch_size": 256, "n_gpu_layers": -1,
             "flash_attn": True, "cache_type_k": "q8_0", "cache_type_v": "q8_0",
             "split_mode": "row", "main_gpu": 1, "tensor_split": "0.75/0.25",
             "n_cpu_moe": 3, "load_mode": "mlock"}  # fmt: skip
    config = to_server_config(point, ServerConfig(ctx_size=8192))
    assert config.to_dict() == {
        "threads": 4, "ctx_size": 8192, "batch_size": 1024, "ubatch_size": 256,
        "n_gpu_layers": "all", "flash_attn": True, "split_mode": "row",
        "tensor_split": [0.75, 0.25], "main_gpu": 1, "mlock": True, "cache_type_k": "q8_0",
        "cache_type_v": "q8_0", "no_mmap": True, "n_cpu_moe": 3,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("point", "expected"),
    [({"mmap": True}, {"mlock": True}), ({"mmap": False}, {"no_mmap": True, "mlock": True}),
     ({"load_mode": "mmap"}, {}), ({"load_mode": "none"}, {"no_mmap": True}),
     ({"load_mode": "mmap+mlock"}, {"mlock": True})],
)  # fmt: skip
def test_load_modes_become_the_two_switches_and_the_default_stays_unset(
    point: dict[str, Any], expected: dict[str, Any]
) -> None:
    base = ServerConfig(no_mmap=True, mlock=True)
    # The keys a tuned field decides are replaced (mmap decides no_mmap; load_mode both),
    # the others kept.
    assert to_server_config(point, base).to_dict() == expected
    assert owned_keys(point) == ({"no_mmap"} if "mmap" in point else {"no_mmap", "mlock"})


# -- pruned before it runs ------------------------------------------------------------------


def feasibility(info: ModelInfo | None = None, **overrides: Any) -> Feasibility:
    values: dict[str, Any] = {"info": info or model(), "base": ServerConfig(), "gpu_layers": None,
                              "server": captured_caps("current", "server"),
                              "budget": Budget()}  # fmt: skip
    values.update(overrides)
    return Feasibility(**values)


def test_a_micro_batch_above_the_batch_is_pruned_and_an_unset_one_is_not() -> None:
    check = feasibility()
    problem = check.problem({"batch_size": 256, "ubatch_size": 512})
    assert "ubatch_size 512 > batch_size 256" in (problem or "")
    assert check.problem({"batch_size": 256, "ubatch_size": 256}) is None
    assert check.problem({"batch_size": 64}) is None  # llama.cpp takes min(512, 64)


def test_a_quantized_v_cache_without_flash_attention_is_pruned() -> None:
    check = feasibility()
    assert "needs flash attention" in (check.problem({"cache_type_v": "q8_0",
                                                      "flash_attn": False}) or "")  # fmt: skip
    assert check.problem({"cache_type_v": "q8_0", "flash_attn": True}) is None
    # Unset, flash attention is what llama-bench defaults to: off on legacy builds.
    assert check.problem({"cache_type_v": "q8_0"}) is not None
    assert feasibility(flash_by_default=True).problem({"cache_type_v": "q8_0"}) is None


def test_a_cache_block_that_does_not_divide_the_head_size_is_pruned() -> None:
    check = feasibility(model(embedding_length=64, head_count=4))
    assert "head size 16" in (check.problem({"cache_type_k": "q4_0"}) or "")


def test_settings_that_would_not_fit_the_memory_budget_are_pruned_by_the_gateways_estimate() -> (
    None
):
    # 512 MiB of weights, 128 MiB of KV cache at a 4096 context, 74 MiB of compute
    # buffers, 32 MiB of runtime: about 750 MiB, all in RAM.
    check = feasibility(budget=Budget(ram_mib=800.0), base=ServerConfig(ctx_size=4096))
    assert check.problem({"flash_attn": True}) is None
    # Without flash attention the attention scores add ubatch x ctx x heads x 4 bytes (64 MiB).
    reason = check.problem({"flash_attn": False, "ubatch_size": 512})
    assert reason is not None
    assert "memory budget" in reason
    assert "RAM" in reason
