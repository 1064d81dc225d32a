"""The gateway's memory measurements: made at open, kept as peaks, and a database that
cannot be made costs only the measurements (loads then use estimates)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llamaswitch._catalog import ModelCatalog, ModelInfo
from llamaswitch.gateway.measurements import MeasurementStore
from llamaswitch.servers.config import ServerConfig
from llamaswitch.testing import write_tiny_model


def _info(tmp_path: Path) -> ModelInfo:
    write_tiny_model(tmp_path / "models" / "m.gguf", name="m")
    catalog = ModelCatalog(tmp_path / "models")
    try:
        return catalog.resolve("m.gguf")
    finally:
        catalog.close()


def test_open_makes_the_database_and_figures_are_kept_as_peaks(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path / "state" / "measurements.sqlite3")
    store.open()
    assert store.path.is_file()
    info, config = _info(tmp_path), ServerConfig(ctx_size=512)
    assert store.get(info, config) is None
    store.record(info, config, ram_mib=100.0, vram_mib={0: 50.0}, binary_version="1")
    kept = store.record(info, config, ram_mib=80.0, vram_mib={0: 70.0}, binary_version="1")
    assert (kept.ram_mib, kept.vram_mib) == (100.0, {0: 70.0})
    store.close()
    again = MeasurementStore(store.path).get(info, config)
    assert again is not None
    assert (again.ram_mib, again.vram_mib, again.source) == (100.0, {0: 70.0}, "measured")


def test_a_database_that_cannot_be_made_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    store = MeasurementStore(blocker / "measurements.sqlite3")
    with caplog.at_level(logging.WARNING, logger="llamaswitch.gateway.measurements"):
        store.open()
    assert "memory measurements unavailable" in caplog.text
    assert not (blocker / "measurements.sqlite3").exists()


def test_known_answers_from_memory_what_the_database_held_at_open(tmp_path: Path) -> None:
    path = tmp_path / "state" / "measurements.sqlite3"
    info, config = _info(tmp_path), ServerConfig(ctx_size=512)
    first = MeasurementStore(path)
    first.open()
    first.record(info, config, ram_mib=120.0, vram_mib={0: 30.0}, binary_version="1")
    # A row that does not read (edited by hand) is skipped, not fatal.
    with first._connection() as db, db:
        db.execute("INSERT INTO measurements VALUES ('other', '{}', 1.0, 'not json', '1', '')")
    first.close()

    store = MeasurementStore(path)
    assert store.known(info, config) is None  # not opened: nothing read yet
    store.open()
    store.close()  # the copy in memory outlives the connection: no query answers known()
    known = store.known(info, config)
    assert known is not None
    assert (known.ram_mib, known.vram_mib, known.source) == (120.0, {0: 30.0}, "measured")
    assert store.known(info, ServerConfig(ctx_size=1024)) is None  # another memory config
    assert store.known(info, ServerConfig(ctx_size=512, threads=3)) == known  # same memory
    # A new peak is known at once.
    store.record(info, config, ram_mib=150.0, vram_mib={0: 10.0}, binary_version="1")
    again = store.known(info, config)
    assert again is not None
    assert (again.ram_mib, again.vram_mib) == (150.0, {0: 30.0})
