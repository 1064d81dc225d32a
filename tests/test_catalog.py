"""The model catalog: listing the models folder and resolving what users call a model."""

from __future__ import annotations

import itertools
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import gguf
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch import _catalog, _gguf
from llamaswitch._catalog import ModelCatalog, ModelInfo
from llamaswitch._errors import (
    ModelError,
    ModelNotFoundError,
    ModelPathError,
    ServiceClosedError,
)
from llamaswitch._gguf import GGUFHeader, read_header
from llamaswitch._text import encodable
from llamaswitch.testing import TinyModelSpec, write_tiny_model

# Narrow weights keep each copy near 40 kB; the header is a full tiny model's.
NARROW = {"embedding_length": 16, "feed_forward_length": 16}


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One valid tiny model, to copy under as many names as a test needs."""
    folder = tmp_path_factory.mktemp("source")
    return write_tiny_model(folder / "m.gguf", name="copy", **NARROW).read_bytes()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    return models


def place(model_bytes: bytes, *paths: Path) -> None:
    """Copies of the tiny model at ``paths`` (folders created)."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model_bytes)


def write_sharded(path: Path, shards: int, *, name: str = "sharded") -> list[Path]:
    """A model split by gguf's writer into ``path``-0000N-of-0000M.gguf, one tensor each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=1)
    try:
        writer.add_name(name)
        writer.add_context_length(1024)
        writer.add_block_count(shards)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        for index in range(shards):
            writer.add_tensor(f"blk.{index}.w", np.zeros((4, 8), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))


def write_projector(path: Path) -> Path:
    """A file whose header says it is a multimodal projector (general.type = mmproj)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "clip")
    try:
        writer.add_type("mmproj")
        writer.add_tensor("v.w", np.zeros((2, 2), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def relative_paths(catalog: ModelCatalog) -> list[str]:
    return [m.relative_path for m in catalog.list_models()]


def by_path(catalog: ModelCatalog) -> dict[str, ModelInfo]:
    return {m.relative_path: m for m in catalog.list_models()}


# -- listing -----------------------------------------------------------------------------------


def test_metadata_is_what_was_written(folder: Path) -> None:
    spec = TinyModelSpec(name="Tiny", embedding_length=32, block_count=3, context_length=512)
    path = write_tiny_model(
        folder / "tiny.gguf",
        name=spec.name,
        embedding_length=spec.embedding_length,
        block_count=spec.block_count,
        context_length=spec.context_length,
    )

    [model] = ModelCatalog(folder).list_models()

    assert model == ModelInfo(
        name="tiny.gguf",
        path=path,
        size=path.stat().st_size,
        relative_path="tiny.gguf",
        architecture="llama",
        display_name="Tiny",
        parameter_count=spec.parameter_count,
        quantization="F32",
        context_length=512,
        block_count=3,
        embedding_length=32,
        head_count=spec.head_count,
        head_count_kv=spec.head_count_kv,
        vocab_size=spec.vocab_size,
        shard_count=1,
        shard_paths=(path,),
        projector_path=None,
        error=None,
    )


def test_models_are_sorted_by_relative_path_ignoring_case_first(
    folder: Path, model_bytes: bytes
) -> None:
    names = ["b.gguf", "z.gguf", "Z.gguf", "A.gguf", "a/c.gguf", "B/x.gguf"]
    place(model_bytes, *(folder / n for n in names))

    assert relative_paths(ModelCatalog(folder)) == [
        "A.gguf",
        "a/c.gguf",
        "b.gguf",
        "B/x.gguf",
        "Z.gguf",
        "z.gguf",
    ]


def test_subfolder_models_have_posix_relative_paths_and_absolute_paths(
    folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, folder / "org" / "family" / "m.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert (model.name, model.relative_path) == ("m.gguf", "org/family/m.gguf")
    assert model.path == folder / "org" / "family" / "m.gguf"
    assert model.path.is_absolute()


def test_relative_models_folder_gives_absolute_paths(
    folder: Path, model_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    place(model_bytes, folder / "m.gguf")
    monkeypatch.chdir(folder.parent)

    [model] = ModelCatalog(Path("models")).list_models()

    assert model.path == folder / "m.gguf"


def test_missing_models_folder_lists_nothing(tmp_path: Path) -> None:
    assert ModelCatalog(tmp_path / "nowhere").list_models() == []


def test_files_that_are_not_gguf_are_ignored(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "m.gguf", folder / "m.bin", folder / "m.gguf.part")
    (folder / "README.md").write_text("models")

    assert relative_paths(ModelCatalog(folder)) == ["m.gguf"]


def test_hidden_files_and_folders_are_skipped(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "m.gguf", folder / ".hidden.gguf", folder / ".cache" / "x.gguf")

    assert relative_paths(ModelCatalog(folder)) == ["m.gguf"]


# -- shards ------------------------------------------------------------------------------------


def test_shards_are_listed_as_one_model(folder: Path) -> None:
    shards = write_sharded(folder / "kimi" / "Kimi", 3)

    [model] = ModelCatalog(folder).list_models()

    assert model.name == "Kimi-00001-of-00003.gguf"
    assert model.relative_path == "kimi/Kimi-00001-of-00003.gguf"
    assert model.shard_count == 3
    assert model.shard_paths == tuple(shards)
    assert model.size == sum(s.stat().st_size for s in shards)
    assert model.error is None


def test_sharded_model_metadata_comes_from_the_first_shard(folder: Path) -> None:
    write_sharded(folder / "Kimi", 3, name="Kimi K2")

    [model] = ModelCatalog(folder).list_models()

    assert (model.display_name, model.context_length, model.quantization) == (
        "Kimi K2",
        1024,
        "Q8_0",
    )


def test_sharded_model_counts_the_parameters_of_every_shard(folder: Path) -> None:
    write_sharded(folder / "Kimi", 3)

    [model] = ModelCatalog(folder).list_models()

    assert model.parameter_count == 3 * 4 * 8


def test_missing_shard_is_named_in_the_error(folder: Path) -> None:
    shards = write_sharded(folder / "Kimi", 3)
    shards[1].unlink()

    [model] = ModelCatalog(folder).list_models()

    assert model.error == "missing shard 2 (Kimi-00002-of-00003.gguf) of 3"
    assert (model.shard_count, model.architecture) == (3, None)


def test_model_missing_its_first_shard_is_listed_under_that_shard_name(folder: Path) -> None:
    shards = write_sharded(folder / "Kimi", 2)
    shards[0].unlink()

    [model] = ModelCatalog(folder).list_models()

    assert model.name == "Kimi-00001-of-00002.gguf"
    assert model.error is not None
    assert "missing shard 1" in model.error


def test_corrupt_shard_makes_the_model_unusable(folder: Path) -> None:
    shards = write_sharded(folder / "Kimi", 2)
    shards[1].write_bytes(b"garbage")

    [model] = ModelCatalog(folder).list_models()

    assert model.error is not None
    assert model.error.startswith("shard 2 of 2 (Kimi-00002-of-00002.gguf): not a GGUF file")


# -- projectors --------------------------------------------------------------------------------


def test_projector_is_attached_to_the_model_beside_it_not_listed(
    folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, folder / "gemma" / "gemma-Q8_0.gguf", folder / "gemma" / "mmproj-F16.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert model.relative_path == "gemma/gemma-Q8_0.gguf"
    assert model.projector_path == folder / "gemma" / "mmproj-F16.gguf"


def test_projector_name_prefix_ignores_case(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "m.gguf", folder / "MMProj-m.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert model.projector_path == folder / "MMProj-m.gguf"


def test_projector_is_recognised_by_its_header_too(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "qwen-vl" / "qwen-vl.gguf")
    write_projector(folder / "qwen-vl" / "vision-encoder.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert model.projector_path == folder / "qwen-vl" / "vision-encoder.gguf"


def test_projector_serves_only_its_own_folder(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "vl" / "vl.gguf", folder / "vl" / "mmproj.gguf", folder / "t.gguf")

    models = by_path(ModelCatalog(folder))

    assert models["t.gguf"].projector_path is None
    assert models["vl/vl.gguf"].projector_path == folder / "vl" / "mmproj.gguf"


def test_with_several_projectors_the_closest_name_wins(folder: Path, model_bytes: bytes) -> None:
    place(
        model_bytes,
        folder / "gemma-3-4b.gguf",
        folder / "qwen2-vl-7b.gguf",
        folder / "mmproj-gemma-3-4b-f16.gguf",
        folder / "mmproj-qwen2-vl-7b-f16.gguf",
    )

    models = by_path(ModelCatalog(folder))

    assert models["gemma-3-4b.gguf"].projector_path == folder / "mmproj-gemma-3-4b-f16.gguf"
    assert models["qwen2-vl-7b.gguf"].projector_path == folder / "mmproj-qwen2-vl-7b-f16.gguf"


# -- files that are not models -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(random.Random(0).randbytes(4096), "not a GGUF file", id="random bytes"),
        pytest.param(b"", "empty file", id="empty"),
        pytest.param(None, "truncated", id="truncated"),
    ],
)
def test_corrupt_file_is_listed_with_an_error_beside_the_good_ones(
    folder: Path, model_bytes: bytes, content: bytes | None, message: str
) -> None:
    place(model_bytes, folder / "a-good.gguf", folder / "z-good.gguf")
    bad = model_bytes[: len(model_bytes) // 2] if content is None else content
    (folder / "bad.gguf").write_bytes(bad)

    models = by_path(ModelCatalog(folder))

    assert models["bad.gguf"].error is not None
    assert message in models["bad.gguf"].error
    assert models["bad.gguf"].architecture is None
    assert models["bad.gguf"].size == len(bad)
    assert [models["a-good.gguf"].error, models["z-good.gguf"].error] == [None, None]


# -- symlinks ----------------------------------------------------------------------------------


def test_symlinked_file_is_followed(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "store" / "real.gguf")
    (folder / "alias.gguf").symlink_to(folder / "store" / "real.gguf")

    models = by_path(ModelCatalog(folder))

    assert models["alias.gguf"].architecture == "llama"
    assert models["alias.gguf"].path == folder / "alias.gguf"


def test_symlinked_folder_is_followed(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "store" / "m.gguf")
    (folder / "latest").symlink_to(folder / "store", target_is_directory=True)

    assert relative_paths(ModelCatalog(folder)) == ["latest/m.gguf", "store/m.gguf"]


def test_symlink_loop_is_not_followed_forever(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "sub" / "m.gguf")
    (folder / "sub" / "back").symlink_to(folder, target_is_directory=True)

    assert relative_paths(ModelCatalog(folder)) == ["sub/m.gguf"]


def test_symlinked_models_folder_is_followed(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "m.gguf")
    link = folder.parent / "link"
    link.symlink_to(folder, target_is_directory=True)

    assert relative_paths(ModelCatalog(link)) == ["m.gguf"]


def test_symlink_out_of_the_folder_is_listed_with_an_error(
    tmp_path: Path, folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")
    (folder / "m.gguf").symlink_to(tmp_path / "elsewhere" / "m.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert model.error is not None
    assert "outside the models folder" in model.error


def test_symlinked_folder_out_of_the_folder_is_not_entered(
    tmp_path: Path, folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")
    (folder / "ext").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    assert ModelCatalog(folder).list_models() == []


def test_symlinks_out_of_the_folder_are_followed_when_allowed(
    tmp_path: Path, folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")
    (folder / "m.gguf").symlink_to(tmp_path / "elsewhere" / "m.gguf")
    (folder / "ext").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    models = by_path(ModelCatalog(folder, allow_outside=True))

    assert [models["m.gguf"].error, models["ext/m.gguf"].error] == [None, None]


def test_broken_symlink_is_listed_with_an_error(folder: Path) -> None:
    (folder / "gone.gguf").symlink_to(folder / "nothing.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert model.error is not None
    assert "broken symbolic link" in model.error


# -- names that are not valid UTF-8 --------------------------------------------------------------
# POSIX names are bytes; Python shows the undecodable ones as lone surrogates, which no JSON
# answer, SQLite row, log line or child's argv can hold.

NOT_UTF8 = b"caf\xe9.gguf"  # "café" in Latin-1
SHOWN = "caf\ufffd.gguf"


@pytest.fixture
def bytes_names(folder: Path) -> None:
    """Skip where the file system refuses names that are not valid UTF-8 (macOS)."""
    try:
        (Path(os.fsdecode(os.fsencode(folder) + b"/probe-\xff"))).touch()
    except OSError:
        pytest.skip("this file system only takes UTF-8 file names")
    os.remove(os.fsencode(folder) + b"/probe-\xff")


def place_named(model_bytes: bytes, folder: Path, *parts: bytes) -> bytes:
    """A copy of the tiny model at ``folder/parts...``, named by raw bytes; its path."""
    path = os.path.join(os.fsencode(folder), *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(model_bytes)
    return path


def strings_of(model: ModelInfo) -> list[str]:
    """Every string a model carries, paths included."""
    values = attrs.asdict(model, recurse=False)
    paths = [values.pop("path"), values.pop("projector_path"), *values.pop("shard_paths")]
    return [str(p) for p in paths if p is not None] + [
        v for v in values.values() if isinstance(v, str)
    ]


@pytest.mark.usefixtures("bytes_names")
def test_a_file_name_that_is_not_utf8_is_listed_with_an_error(
    folder: Path, model_bytes: bytes
) -> None:
    place_named(model_bytes, folder, NOT_UTF8)

    [model] = ModelCatalog(folder).list_models()

    assert model.error is not None
    assert model.error.startswith("file name is not valid UTF-8")
    assert (model.name, model.relative_path) == (SHOWN, SHOWN)


@pytest.mark.usefixtures("bytes_names")
def test_every_string_of_a_model_named_in_bytes_is_valid_utf8(
    folder: Path, model_bytes: bytes
) -> None:
    place_named(model_bytes, folder, b"sub\xff", NOT_UTF8)
    place_named(model_bytes, folder, b"sub\xff", b"mmproj-F16.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert all(encodable(text) for text in strings_of(model))


@pytest.mark.usefixtures("bytes_names")
def test_a_folder_name_that_is_not_utf8_lists_its_models_with_an_error(
    folder: Path, model_bytes: bytes
) -> None:
    place_named(model_bytes, folder, b"org\xff", b"m.gguf")

    [model] = ModelCatalog(folder).list_models()

    assert model.error is not None
    assert model.error.startswith("folder path is not valid UTF-8")
    assert model.relative_path == "org\ufffd/m.gguf"


@pytest.mark.usefixtures("bytes_names")
def test_a_model_named_in_bytes_is_not_resolved_by_its_shown_name(
    folder: Path, model_bytes: bytes
) -> None:
    place_named(model_bytes, folder, NOT_UTF8)

    with pytest.raises(ModelPathError, match="not valid UTF-8"):
        ModelCatalog(folder).resolve(SHOWN)


@pytest.mark.usefixtures("bytes_names")
def test_a_model_named_in_bytes_is_not_resolved_by_its_name_on_disk(
    folder: Path, model_bytes: bytes
) -> None:
    place_named(model_bytes, folder, NOT_UTF8)

    with pytest.raises(ModelPathError, match="not valid UTF-8"):
        ModelCatalog(folder).resolve(os.fsdecode(NOT_UTF8))  # as a command line gives it


@pytest.mark.usefixtures("bytes_names")
def test_a_file_really_named_with_u_fffd_is_resolved_beside_one_named_in_bytes(
    folder: Path, model_bytes: bytes
) -> None:
    place_named(model_bytes, folder, NOT_UTF8)
    place(model_bytes, folder / SHOWN)

    model = ModelCatalog(folder).resolve(SHOWN)

    assert model.error is None
    assert model.path == folder / SHOWN


@pytest.mark.usefixtures("bytes_names")
def test_a_shard_named_in_bytes_makes_its_model_unresolvable(folder: Path) -> None:
    first, second = write_sharded(folder / "Kimi", 2)
    os.rename(second, os.fsencode(folder) + b"/Kimi\xff-00002-of-00002.gguf")
    os.rename(first, os.fsencode(folder) + b"/Kimi\xff-00001-of-00002.gguf")
    catalog = ModelCatalog(folder)

    [model] = catalog.list_models()

    assert model.error is not None
    assert "not valid UTF-8" in model.error
    with pytest.raises(ModelPathError):
        catalog.resolve("Kimi\ufffd-00001-of-00002.gguf")


def test_a_reference_that_is_not_valid_unicode_is_not_found_and_shown_valid(
    catalog: ModelCatalog,
) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        catalog.resolve("tiny\ud800.gguf")  # JSON's "\ud800" decodes to a lone surrogate

    assert caught.value.reference == "tiny\ufffd.gguf"
    assert encodable(str(caught.value))


@pytest.mark.usefixtures("bytes_names")
def test_a_symlink_out_to_a_path_that_is_not_utf8_is_described_in_valid_utf8(
    tmp_path: Path, folder: Path, model_bytes: bytes
) -> None:
    target = place_named(model_bytes, tmp_path, b"elsewhere\xff", b"m.gguf")
    (folder / "m.gguf").symlink_to(os.fsdecode(target))

    [model] = ModelCatalog(folder).list_models()

    assert model.error is not None
    assert "elsewhere\ufffd/m.gguf, outside the models folder" in model.error


# -- the header cache --------------------------------------------------------------------------


def test_second_listing_reads_no_header(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "a.gguf", folder / "b.gguf", folder / "sub" / "c.gguf")
    catalog = ModelCatalog(folder)
    first = catalog.list_models()
    reads = catalog.header_reads

    second = catalog.list_models()

    assert reads == 3
    assert catalog.header_reads == reads
    assert second == first


def test_rewritten_file_is_read_again(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "a.gguf", folder / "b.gguf")
    catalog = ModelCatalog(folder)
    catalog.list_models()
    write_tiny_model(folder / "a.gguf", name="renamed", **NARROW)

    models = by_path(catalog)

    assert catalog.header_reads == 3
    assert models["a.gguf"].display_name == "renamed"


def test_touched_file_is_read_again(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "a.gguf")
    catalog = ModelCatalog(folder)
    catalog.list_models()
    stat = (folder / "a.gguf").stat()
    os.utime(folder / "a.gguf", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    catalog.list_models()

    assert catalog.header_reads == 2


def test_corrupt_file_is_not_read_again_until_it_changes(folder: Path) -> None:
    (folder / "bad.gguf").write_bytes(b"garbage")
    catalog = ModelCatalog(folder)
    catalog.list_models()

    catalog.list_models()

    assert catalog.header_reads == 1


def test_concurrent_listings_read_each_header_once(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, *(folder / f"m{i}.gguf" for i in range(20)))
    catalog = ModelCatalog(folder)
    results: list[list[ModelInfo]] = []

    threads = [
        threading.Thread(target=lambda: results.append(catalog.list_models())) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert catalog.header_reads == 20
    assert all(result == results[0] for result in results)


# -- what a scan costs, and stopping it ------------------------------------------------------


def test_a_file_over_the_header_budget_is_listed_with_an_error_quickly(
    folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, folder / "good.gguf")
    # A sparse 256 MiB file: one array of 33 million empty strings, 4 KB on disk.
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"a"
    head += struct.pack("<IIQ", 9, 8, (2**28 - len(head) - 16) // 8)
    (folder / "evil.gguf").write_bytes(head)
    os.truncate(folder / "evil.gguf", 2**28)
    started = time.thread_time()

    models = by_path(ModelCatalog(folder, header_budget_s=0.05))

    assert time.thread_time() - started < 0.25  # seconds without the budget
    assert models["good.gguf"].error is None
    assert models["evil.gguf"].error is not None
    assert models["evil.gguf"].error.startswith("header too large")


def test_a_catalog_can_give_headers_more_cpu_time(
    folder: Path, model_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    place(model_bytes, folder / "m.gguf")
    clock = itertools.count(step=1)  # every reading of the clock: 1 s later
    monkeypatch.setattr(_gguf, "_cpu_time", lambda: next(clock))

    [default] = ModelCatalog(folder).list_models()
    [patient] = ModelCatalog(folder, header_budget_s=3600).list_models()

    assert default.error is not None
    assert "exceeds the 500 ms CPU budget" in default.error
    assert patient.error is None


class BlockingReads:
    """A stand-in for read_header that holds each read until released (a slow disk)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.reads = 0

    def __call__(self, path: str, **kwargs: object) -> GGUFHeader:
        self.reads += 1
        self.entered.set()
        self.release.wait(10)
        return read_header(path)


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``call`` in a thread; the list receives its result or its exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the test inspects whatever it raised
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.fixture
def blocking_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlockingReads]:
    reads = BlockingReads()
    monkeypatch.setattr(_catalog, "read_header", reads)
    yield reads
    reads.release.set()


def test_close_stops_a_listing_in_progress_before_its_next_file(
    folder: Path, model_bytes: bytes, blocking_reads: BlockingReads
) -> None:
    place(model_bytes, *(folder / f"m{i}.gguf" for i in range(50)))
    catalog = ModelCatalog(folder)
    thread, outcome = in_thread(catalog.list_models)
    assert blocking_reads.entered.wait(5)

    catalog.close()
    blocking_reads.release.set()
    thread.join(1.0)

    assert not thread.is_alive()
    assert isinstance(outcome[0], ServiceClosedError)
    assert "closed" in str(outcome[0])
    assert blocking_reads.reads == 1


def test_close_releases_a_listing_waiting_for_the_scan_at_once(
    folder: Path, model_bytes: bytes, blocking_reads: BlockingReads
) -> None:
    place(model_bytes, folder / "m.gguf")
    catalog = ModelCatalog(folder)
    scanning, _ = in_thread(catalog.list_models)
    assert blocking_reads.entered.wait(5)
    waiting, outcome = in_thread(catalog.list_models)
    time.sleep(0.05)  # let it queue behind the scan

    catalog.close()  # the scan itself is still stuck in its read
    waiting.join(1.0)

    assert not waiting.is_alive()
    assert isinstance(outcome[0], ServiceClosedError)
    assert scanning.is_alive()


def test_a_closed_catalog_refuses_to_list(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "m.gguf")
    catalog = ModelCatalog(folder)
    catalog.close()

    with pytest.raises(ServiceClosedError, match="the model catalog is closed"):
        catalog.list_models()


def test_a_closed_catalog_refuses_to_resolve(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "m.gguf")
    catalog = ModelCatalog(folder)
    catalog.close()

    with pytest.raises(ServiceClosedError, match="the model catalog is closed"):
        catalog.resolve("m.gguf")


# -- resolve -----------------------------------------------------------------------------------


@pytest.fixture
def catalog(folder: Path, model_bytes: bytes) -> ModelCatalog:
    """tiny.gguf at the top; gemma/ (a model with its projector); kimi/ (three shards)."""
    place(model_bytes, folder / "tiny.gguf", folder / "gemma" / "gemma-3-4b-Q8_0.gguf")
    place(model_bytes, folder / "gemma" / "mmproj-F16.gguf")
    write_sharded(folder / "kimi" / "Kimi-K2", 3, name="Kimi K2")
    return ModelCatalog(folder)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        pytest.param("tiny.gguf", "tiny.gguf", id="file name"),
        pytest.param("tiny", "tiny.gguf", id="name without .gguf"),
        pytest.param("./tiny.gguf", "tiny.gguf", id="dot slash"),
        pytest.param("gemma/gemma-3-4b-Q8_0.gguf", "gemma/gemma-3-4b-Q8_0.gguf", id="relative"),
        pytest.param("gemma-3-4b-Q8_0", "gemma/gemma-3-4b-Q8_0.gguf", id="subfolder name"),
        pytest.param("gemma", "gemma/gemma-3-4b-Q8_0.gguf", id="folder of a lone model"),
        pytest.param("Kimi K2", "kimi/Kimi-K2-00001-of-00003.gguf", id="general.name"),
        pytest.param("Kimi-K2", "kimi/Kimi-K2-00001-of-00003.gguf", id="shard prefix"),
        pytest.param(
            "kimi/Kimi-K2-00003-of-00003.gguf",
            "kimi/Kimi-K2-00001-of-00003.gguf",
            id="a later shard",
        ),
        pytest.param("gemma/../tiny.gguf", "tiny.gguf", id="dot dot staying inside"),
    ],
)
def test_resolve_accepts_the_seed_forms(
    catalog: ModelCatalog, reference: str, expected: str
) -> None:
    assert catalog.resolve(reference).relative_path == expected


def test_resolve_accepts_an_absolute_path_inside_the_folder(
    catalog: ModelCatalog, folder: Path
) -> None:
    assert catalog.resolve(str(folder / "tiny.gguf")).relative_path == "tiny.gguf"


def test_resolve_accepts_the_real_path_behind_a_symlinked_folder(
    folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, folder / "m.gguf")
    link = folder.parent / "link"
    link.symlink_to(folder, target_is_directory=True)

    model = ModelCatalog(link).resolve(str(folder / "m.gguf"))

    assert model.path == link / "m.gguf"


def test_resolve_returns_the_projector_with_the_model(catalog: ModelCatalog, folder: Path) -> None:
    assert catalog.resolve("gemma").projector_path == folder / "gemma" / "mmproj-F16.gguf"


def test_resolve_refuses_dot_dot_out_of_the_folder(catalog: ModelCatalog, folder: Path) -> None:
    (folder.parent / "secret.gguf").write_bytes(b"GGUF")

    with pytest.raises(ModelPathError) as caught:
        catalog.resolve("../secret.gguf")

    assert "'../secret.gguf'" in str(caught.value)
    assert str(folder) in str(caught.value)


def test_resolve_refuses_traversal_to_a_system_file(catalog: ModelCatalog) -> None:
    with pytest.raises(ModelPathError):
        catalog.resolve("../../../../../../etc/passwd")


def test_resolve_refuses_an_absolute_path_elsewhere(catalog: ModelCatalog, tmp_path: Path) -> None:
    with pytest.raises(ModelPathError):
        catalog.resolve(str(tmp_path / "elsewhere.gguf"))


def test_resolve_refuses_a_symlink_escape(tmp_path: Path, folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")
    (folder / "m.gguf").symlink_to(tmp_path / "elsewhere" / "m.gguf")

    with pytest.raises(ModelPathError, match="outside the models folder"):
        ModelCatalog(folder).resolve("m.gguf")


@pytest.mark.parametrize(
    "reference",
    ["m.gguf", "m", "linked/m.gguf", "linked", "linked/m", "copy"],
)
def test_resolve_refuses_a_symlink_escape_by_any_name(
    tmp_path: Path, folder: Path, model_bytes: bytes, reference: str
) -> None:
    """Not only the link's path: its stem, the folder it sits alone in, its file name."""
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")
    (folder / "m.gguf").symlink_to(tmp_path / "elsewhere" / "m.gguf")
    (folder / "linked").mkdir()
    (folder / "linked" / "m.gguf").symlink_to(tmp_path / "elsewhere" / "m.gguf")
    catalog = ModelCatalog(folder)

    if reference == "copy":  # general.name: never read from a file outside the folder
        with pytest.raises(ModelNotFoundError):
            catalog.resolve(reference)
        return
    with pytest.raises(ModelPathError, match="outside the models folder"):
        catalog.resolve(reference)


def test_resolve_refuses_a_shard_that_escapes(tmp_path: Path, folder: Path) -> None:
    shards = write_sharded(folder / "big" / "Big", 2)
    shards[1].rename(tmp_path / shards[1].name)
    shards[1].symlink_to(tmp_path / shards[1].name)

    with pytest.raises(ModelPathError, match=shards[1].name):
        ModelCatalog(folder).resolve("big")


def test_resolve_accepts_a_symlink_escape_by_name_when_allowed(
    tmp_path: Path, folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")
    (folder / "m.gguf").symlink_to(tmp_path / "elsewhere" / "m.gguf")

    model = ModelCatalog(folder, allow_outside=True).resolve("m")

    assert (model.relative_path, model.error) == ("m.gguf", None)


def test_resolve_accepts_an_outside_file_when_allowed(
    tmp_path: Path, folder: Path, model_bytes: bytes
) -> None:
    place(model_bytes, tmp_path / "elsewhere" / "m.gguf")

    model = ModelCatalog(folder, allow_outside=True).resolve(str(tmp_path / "elsewhere" / "m.gguf"))

    assert (model.path, model.architecture) == (tmp_path / "elsewhere" / "m.gguf", "llama")
    assert model.relative_path == (tmp_path / "elsewhere" / "m.gguf").as_posix()


def test_resolve_groups_an_outside_shard_with_its_siblings_when_allowed(
    tmp_path: Path, folder: Path
) -> None:
    shards = write_sharded(tmp_path / "elsewhere" / "Big", 2)

    model = ModelCatalog(folder, allow_outside=True).resolve(str(shards[1]))

    assert model.shard_paths == tuple(shards)


def test_resolve_of_a_missing_outside_file_is_not_found_even_when_allowed(
    tmp_path: Path, folder: Path
) -> None:
    with pytest.raises(ModelNotFoundError):
        ModelCatalog(folder, allow_outside=True).resolve(str(tmp_path / "nothing.gguf"))


def test_unknown_model_suggests_the_closest_names(folder: Path, model_bytes: bytes) -> None:
    names = ["llama-7b", "llama-13b", "llama-70b", "mistral-7b", "qwen2-0.5b"]
    place(model_bytes, *(folder / f"{n}.gguf" for n in names))

    with pytest.raises(ModelNotFoundError) as caught:
        ModelCatalog(folder).resolve("lama-7b")

    assert caught.value.suggestions[0] == "llama-7b.gguf"
    assert len(caught.value.suggestions) <= 3
    assert "qwen2-0.5b.gguf" not in caught.value.suggestions


def test_unknown_model_with_nothing_close_suggests_nothing(catalog: ModelCatalog) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        catalog.resolve("completely-different")

    assert caught.value.suggestions == []


def test_file_name_shared_by_two_folders_is_ambiguous(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "a" / "model.gguf", folder / "b" / "model.gguf")

    with pytest.raises(ModelNotFoundError) as caught:
        ModelCatalog(folder).resolve("model.gguf")

    assert caught.value.suggestions == ["a/model.gguf", "b/model.gguf"]


def test_display_name_shared_by_two_models_is_ambiguous(folder: Path, model_bytes: bytes) -> None:
    place(model_bytes, folder / "one.gguf", folder / "two.gguf")  # both named "copy"

    with pytest.raises(ModelNotFoundError):
        ModelCatalog(folder).resolve("copy")


def test_projector_is_not_a_model(catalog: ModelCatalog) -> None:
    with pytest.raises(ModelNotFoundError):
        catalog.resolve("gemma/mmproj-F16.gguf")


def test_resolve_returns_a_corrupt_model_with_its_error(folder: Path) -> None:
    (folder / "bad.gguf").write_bytes(b"garbage")

    assert ModelCatalog(folder).resolve("bad").error is not None


@pytest.fixture(scope="module")
def shared_catalog(tmp_path_factory: pytest.TempPathFactory, model_bytes: bytes) -> ModelCatalog:
    folder = tmp_path_factory.mktemp("shared") / "models"
    place(model_bytes, folder / "tiny.gguf", folder / "sub" / "other.gguf")
    return ModelCatalog(folder)


@given(st.text(max_size=300) | st.sampled_from(["..", "/", "\\", "~", "a" * 5000 + ".gguf"]))
def test_any_reference_resolves_or_raises_a_model_error(
    shared_catalog: ModelCatalog, reference: str
) -> None:
    try:
        outcome: ModelInfo | ModelError = shared_catalog.resolve(reference)
    except ModelError as exc:
        outcome = exc

    assert isinstance(outcome, ModelInfo | ModelError)
