"""Presets and names, without llama.cpp: llamaswitch.toml read through the one
vocabulary, every problem named by file, table and key; names from the catalog and the
presets, clashes named on both sides; the memory estimate from a header."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswitch._catalog import ModelCatalog, ModelInfo
from llamaswitch._errors import PresetsError
from llamaswitch.gateway.memory import estimate
from llamaswitch.gateway.names import NameBook
from llamaswitch.gateway.presets import Presets, load_presets
from llamaswitch.servers.config import ServerConfig
from llamaswitch.testing import TinyModelSpec, write_tiny_model


def presets_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(text)
    return path


def test_a_full_presets_file_reads_into_configs(tmp_path: Path) -> None:
    path = presets_file(
        tmp_path,
        """
# comments are fine
[defaults]
ctx_size = 4096
ttl_s = 300

[models.qwen]
file = "qwen.gguf"
aliases = ["gpt-4o-mini"]
pinned = true
preload = true
n_gpu_layers = "all"
flash_attn = "on"

[models.small]
ttl_s = 0
threads = 2
""",
    )
    presets = load_presets(path)
    qwen, small = presets.models
    assert (qwen.id, qwen.file, qwen.aliases, qwen.pinned, qwen.preload, qwen.ttl_s) == (
        "qwen",
        "qwen.gguf",
        ("gpt-4o-mini",),
        True,
        True,
        300.0,
    )
    assert qwen.config == ServerConfig(ctx_size=4096, n_gpu_layers="all", flash_attn="on")
    assert (small.file, small.ttl_s, small.config.threads, small.config.ctx_size) == (
        "small",
        0.0,
        2,
        4096,
    )
    assert presets.defaults == ServerConfig(ctx_size=4096)
    assert presets.to_data()["models"][0]["config"] == {
        "ctx_size": 4096,
        "n_gpu_layers": "all",
        "flash_attn": "on",
    }


def test_a_server_is_started_to_report_the_model_s_id_or_its_preset_s_alias(
    catalog: ModelCatalog,
) -> None:
    # Its answers' "model" (llama-server's --alias): not the file's path. A preset's own
    # alias wins; an id with a comma, which a current build would read as two names, is
    # left to llama-server.
    from llamaswitch.gateway.gateway import _reported_name

    names = book(catalog, '[models.fast]\nfile = "alpha.gguf"\nalias = "house-model"\n'
                          '[models."x,y"]\nfile = "beta.gguf"\n')  # fmt: skip
    assert _reported_name(names.find("fast")) == "house-model"
    assert _reported_name(names.find("x,y")) is None
    assert _reported_name(names.find("chat/gamma.gguf")) == "gamma"
    assert _reported_name(names.find("a/same")) == "a/same"


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("[models.a]\nthreads = 0\n", "[models.a] threads", "whole number from 1 to 4096"),
        ("[models.a]\nctx_sise = 1\n", "[models.a] ctx_sise", "did you mean ctx_size?"),
        ("[models.a]\nbogus = 1\n", "[models.a] bogus", "a preset takes file, aliases"),
        ("[defaults]\nfile = 'x.gguf'\n", "[defaults] file", "only in [models.<id>]"),
        ("[models.a]\naliases = 'b'\n", "[models.a] aliases", "a list of non-empty strings"),
        ("[models.a]\nttl_s = -1\n", "[models.a] ttl_s", ">= 0"),
        ("[models.a]\nflash_attn = 'maybe'\n", "[models.a] flash_attn", "on, off, auto"),
        ("[model.a]\n", "[model]", "unknown table"),
        ("[models]\na = 1\n", "[models.a]", "must be a table"),
        ("[models.a\n", "", "is not valid TOML"),
    ],
)  # fmt: skip
def test_every_problem_names_the_file_the_table_and_the_key(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    path = presets_file(tmp_path, text)
    with pytest.raises(PresetsError) as refused:
        load_presets(path)
    assert refused.value.path == str(path)
    assert any(w == where and reason in r for w, r in refused.value.errors), refused.value.errors
    assert str(path) in str(refused.value)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = presets_file(tmp_path, "[models.a]\nthreads = 0\nport = 1\n[models.b]\nx = 1\n")
    with pytest.raises(PresetsError) as refused:
        load_presets(path)
    assert [w for w, _ in refused.value.errors] == [
        "[models.a] port",
        "[models.a] threads",
        "[models.b] x",
    ]


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    folder = tmp_path / "models"
    for name in ("alpha", "beta", "chat/gamma", "a/same", "b/same"):
        write_tiny_model(folder / f"{name}.gguf", name=name)
    return ModelCatalog(folder)


def book(catalog: ModelCatalog, text: str = "") -> NameBook:
    presets = load_presets(presets_file(catalog.models_dir, text)) if text else Presets()
    return NameBook.build(catalog.list_models(), presets, catalog.resolve)


def test_every_catalog_model_answers_to_its_file_name_and_stem(catalog: ModelCatalog) -> None:
    names = book(catalog)
    assert names.find("alpha").info.name == "alpha.gguf"
    assert names.find("alpha.gguf").id == "alpha"
    assert names.find("chat/gamma").id == "gamma"
    assert names.find("chat/gamma.gguf").id == "gamma"
    # Two files named alike keep only the names that tell them apart.
    assert names.find("a/same").info.relative_path == "a/same.gguf"
    assert names.find("b/same.gguf").info.relative_path == "b/same.gguf"
    assert names.get("same") is None
    assert names.get("same.gguf") is None
    with pytest.raises(Exception, match="did you mean 'alpha'"):
        names.find("alpah")


def test_a_preset_takes_over_its_file_s_names(catalog: ModelCatalog) -> None:
    names = book(catalog, '[defaults]\nctx_size = 512\n[models.fast]\nfile = "alpha.gguf"\n'
                          'aliases = ["gpt-4o-mini"]\nthreads = 2\n')  # fmt: skip
    fast = names.find("gpt-4o-mini")
    assert fast.id == "fast"
    assert fast.preset == "fast"
    assert names.find("alpha") is fast
    assert names.find("alpha.gguf") is fast
    assert fast.aliases == ("gpt-4o-mini", "alpha", "alpha.gguf")
    assert fast.config == ServerConfig(ctx_size=512, threads=2)
    assert names.find("beta").config == ServerConfig(ctx_size=512)  # [defaults] for all
    assert sorted(m.id for m in names.models) == ["a/same", "b/same", "beta", "fast", "gamma"]


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ('[models.beta]\nfile = "alpha.gguf"\n', "[models.beta]",
         "the name 'beta' is also the catalog model beta.gguf"),
        ('[models.x]\nfile = "alpha.gguf"\naliases = ["y"]\n[models.y]\nfile = "beta.gguf"\n',
         "[models.y]", "the name 'y' is also [models.x]"),
        ('[models.x]\nfile = "nope.gguf"\n', "[models.x] file", "not found"),
        ('[models.x]\nfile = "../outside.gguf"\n', "[models.x] file", "outside"),
    ],
)  # fmt: skip
def test_clashes_and_missing_files_are_configuration_errors(
    catalog: ModelCatalog, text: str, where: str, reason: str
) -> None:
    with pytest.raises(PresetsError) as refused:
        book(catalog, text)
    assert any(w == where and reason in r for w, r in refused.value.errors), refused.value.errors


def test_the_estimate_splits_weights_and_cache_by_gpu_layers(tmp_path: Path) -> None:
    spec = TinyModelSpec(block_count=3)
    write_tiny_model(tmp_path / "m.gguf", block_count=3)
    [info] = ModelCatalog(tmp_path).list_models()
    assert (info.head_count, info.head_count_kv, info.vocab_size) == (
        spec.head_count,
        spec.head_count_kv,
        spec.vocab_size,
    )
    cpu = estimate(info, ServerConfig(ctx_size=1024))
    assert cpu.vram_mib == {}
    # K and V: layers x context x kv heads x head size x 2 bytes (f16), each.
    kv = 3 * 1024 * spec.head_count_kv * (spec.embedding_length // spec.head_count) * 2 * 2
    assert cpu.parts["kv_ram"] == pytest.approx(kv / 2**20)
    assert cpu.parts["weights_ram"] == pytest.approx(info.size / 2**20)
    full = estimate(info, ServerConfig(ctx_size=1024, n_gpu_layers="all"), gpus=(0,))
    assert full.parts["weights_gpu"] == pytest.approx(info.size / 2**20)
    assert full.vram_mib[0] > full.parts["weights_gpu"] + full.parts["kv_gpu"] - 1e-9
    half = estimate(info, ServerConfig(ctx_size=1024, n_gpu_layers=2), gpus=(0,))
    assert half.parts["weights_gpu"] == pytest.approx(info.size / 2**20 / 2)  # 2 of 3 + 1
    q8 = estimate(info, ServerConfig(ctx_size=1024, cache_type_k="q8_0", cache_type_v="q8_0"))
    assert q8.parts["kv_ram"] == pytest.approx(cpu.parts["kv_ram"] * 34 / 64)
    split = estimate(info, ServerConfig(ctx_size=1024, n_gpu_layers="all",
                                        tensor_split=(3.0, 1.0)), gpus=(0, 1))  # fmt: skip
    on_gpus = split.parts["weights_gpu"] + split.parts["kv_gpu"]
    assert split.vram_mib[1] == pytest.approx(on_gpus / 4)


def test_an_unreadable_model_is_still_named(tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"not a model")
    names = NameBook.build(ModelCatalog(tmp_path).list_models(), Presets(),
                           ModelCatalog(tmp_path).resolve)  # fmt: skip
    bad: ModelInfo = names.find("bad").info
    assert bad.error is not None  # loading it says why, rather than "not found"
