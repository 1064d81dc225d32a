"""Capabilities: reading both generations' --help, and mapping settings to their dialects.

The help texts in tests/data/help were captured from the real builds
(`llama-server --help > tests/data/help/current-server.txt` and so on); the live tests
check that the binaries still say the same, so the captured texts cannot drift.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswitch._binaries import _format_version, _parse_version, identify
from llamaswitch._capabilities import parse_help
from llamaswitch._errors import UnsupportedOptionError

from .conftest import LlamaBuild
from .helpers import captured_caps


def test_legacy_server_flash_attention_is_a_bare_switch() -> None:
    c = captured_caps("legacy", "server")
    assert c.flash_attn_values == ()
    assert c.flash_attn_args(True) == ["-fa"]
    assert c.flash_attn_args(False) == []


def test_current_server_flash_attention_takes_on_off_auto() -> None:
    c = captured_caps("current", "server")
    assert c.flash_attn_values == ("on", "off", "auto")
    assert c.flash_attn_args(True) == ["-fa", "on"]
    assert c.flash_attn_args("auto") == ["-fa", "auto"]


def test_legacy_server_has_mlock_and_no_mmap_switches() -> None:
    c = captured_caps("legacy", "server")
    assert c.load_modes == ()
    assert c.server_load_args(mlock=True, no_mmap=None) == ["--mlock"]
    assert c.server_load_args(mlock=True, no_mmap=True) == ["--mlock", "--no-mmap"]


def test_current_server_maps_mlock_to_load_mode() -> None:
    c = captured_caps("current", "server")
    assert "mmap+mlock" in c.load_modes
    assert c.server_load_args(mlock=True, no_mmap=None) == ["--load-mode", "mmap+mlock"]
    assert c.server_load_args(mlock=None, no_mmap=True) == ["--load-mode", "none"]
    assert c.server_load_args(mlock=True, no_mmap=True) == ["--load-mode", "mlock"]


def test_split_modes_of_each_generation() -> None:
    assert captured_caps("legacy", "server").split_modes == ("none", "layer", "row")
    assert captured_caps("current", "server").split_modes == ("none", "layer", "row", "tensor")
    assert captured_caps("legacy", "bench").split_modes == ("none", "layer", "row")
    assert captured_caps("current", "bench").split_modes == ("none", "layer", "row", "tensor")


def test_tensor_split_mode_on_legacy_names_the_version() -> None:
    with pytest.raises(UnsupportedOptionError, match="legacy build") as info:
        captured_caps("legacy", "server").option("split_mode", "tensor", "-sm", "--split-mode")
    assert "none, layer, row" in str(info.value)
    assert info.value.field == "split_mode"


def test_bench_flash_attention_is_numeric_on_legacy_and_worded_on_current() -> None:
    assert captured_caps("legacy", "bench").flash_attn_args(True) == ["-fa", "1"]
    assert captured_caps("current", "bench").flash_attn_args(True) == ["-fa", "on"]
    with pytest.raises(UnsupportedOptionError):
        captured_caps("legacy", "bench").flash_attn_args("auto")


def test_bench_mmap_is_mmp_on_legacy_and_load_mode_on_current() -> None:
    assert captured_caps("legacy", "bench").bench_mmap_args([True, False]) == ["-mmp", "1,0"]
    assert captured_caps("current", "bench").bench_mmap_args([True]) == ["-lm", "mmap"]


def test_dialects_are_told_apart() -> None:
    assert captured_caps("legacy", "server").dialect == "legacy"
    assert captured_caps("current", "server").dialect == "current"
    assert captured_caps("legacy", "bench").dialect == "legacy"
    assert captured_caps("current", "bench").dialect == "current"


def test_cache_types_come_from_allowed_values() -> None:
    for generation in ("legacy", "current"):
        assert "q8_0" in captured_caps(generation, "server").choices("-ctk", "--cache-type-k")


def test_server_flag_spellings_are_all_indexed() -> None:
    c = captured_caps("legacy", "server")
    flag = c.flag("--n-gpu-layers")
    assert flag is not None
    assert flag.names == ("-ngl", "--gpu-layers", "--n-gpu-layers")
    assert flag.metavar == "N"
    assert c.flag("-ngl") is flag


def test_bench_switches_take_no_value_and_placeholders_are_not_choices() -> None:
    c = captured_caps("legacy", "bench")
    progress = c.flag("--progress")
    assert progress is not None
    assert not progress.takes_value
    pg = c.flag("-pg")
    assert pg is not None
    assert pg.takes_value
    assert pg.choices == ()
    assert c.choices("--poll") == ()
    assert c.choices("-o") == ("csv", "json", "jsonl", "md", "sql")


def test_a_valued_option_checks_its_choices() -> None:
    c = captured_caps("current", "bench")
    assert c.option("output", "json", "-o", "--output") == ["--output", "json"]
    with pytest.raises(UnsupportedOptionError, match="csv, json, jsonl, md, sql"):
        c.option("output", "xml", "-o", "--output")


def test_an_unknown_flag_is_unsupported() -> None:
    with pytest.raises(UnsupportedOptionError, match="--n-cpu-moe"):
        captured_caps("legacy", "bench").option("n_cpu_moe", 2, "-ncmoe", "--n-cpu-moe")


def test_parse_help_ignores_prose_and_survives_garbage() -> None:
    assert parse_help("usage: thing\n\nsome words\n  not an option\n") == {}
    assert parse_help("") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 5293 (8733e0c)\nbuilt with cc for x86_64", (None, 5293, "8733e0c")),
        ("version: 1 (8733e0c)", (None, 1, "8733e0c")),
        ("version: 0.6.0-dev (build 0, commit unknown)", ("0.6.0-dev", 0, None)),
        ("version: 0.7.1 (build 7001, commit abc1234)", ("0.7.1", 7001, "abc1234")),
        ("nonsense", (None, None, None)),
    ],
)
def test_version_output_of_both_generations(
    text: str, expected: tuple[str | None, int | None, str | None]
) -> None:
    assert _parse_version(text)[:3] == expected


def test_version_labels() -> None:
    assert _format_version(None, 5293, "8733e0c") == "b5293 (8733e0c)"
    assert _format_version(None, 1, "8733e0c") == "build 1 (8733e0c)"
    assert _format_version("0.6.0-dev", 0, None) == "0.6.0-dev"
    assert _format_version("0.7.1", 7001, "abc1234") == "0.7.1 (b7001, abc1234)"
    assert _format_version(None, None, None) == "unknown"


@pytest.mark.real_binary
def test_live_help_matches_the_captured_help(llama_build: LlamaBuild) -> None:
    for info, kind in ((llama_build.server, "server"), (llama_build.bench, "bench")):
        captured = captured_caps(llama_build.generation, kind)
        live = info.capabilities
        assert set(live.flags) == set(captured.flags), f"refresh tests/data/help ({kind})"
        assert live.dialect == captured.dialect == llama_build.generation
        assert live.split_modes == captured.split_modes


@pytest.mark.real_binary
def test_identity_of_real_binaries(llama_build: LlamaBuild) -> None:
    server = llama_build.server
    assert server.version != "unknown"
    if llama_build.generation == "legacy":
        assert server.commit == "8733e0c"
        # legacy llama-bench has no --version: its llama-server sibling tells the build
        assert llama_build.bench.commit == "8733e0c"
    else:
        assert server.release is not None
    assert "CPU" in server.backends


@pytest.mark.real_binary
def test_identity_is_cached_on_disk(llama_build: LlamaBuild, tmp_path: Path) -> None:
    from llamaswitch import _binaries

    _binaries._memory_cache.clear()
    cache = tmp_path / "binaries.json"
    first = identify(llama_build.server.path, "llama-server", cache_file=cache)
    assert cache.is_file()
    _binaries._memory_cache.clear()
    again = identify(llama_build.server.path, "llama-server", cache_file=cache)
    assert again.capabilities.flags.keys() == first.capabilities.flags.keys()
    assert again.version == first.version
