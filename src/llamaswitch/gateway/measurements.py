"""What each model took when it ran: RSS and VRAM per GPU, per model and memory config.

Stored in SQLite in the state folder, so the figures outlive the service: the next
placement of the same model with the same memory settings uses them instead of the
header estimate. The key is the model file (path, size, modification time: a replaced
file is a new model) and the config fields that change memory use (the rest, such as
threads or the port, do not). The figure kept is the peak seen while it ran.

:meth:`~MeasurementStore.open`, :meth:`~MeasurementStore.record` and
:meth:`~MeasurementStore.close` block (SQLite): the gateway makes them in a worker
thread. :meth:`~MeasurementStore.known` answers from the copy in memory that they keep,
so a load asks it on the loop: a thread hop there cost the first request of a model
half a millisecond.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from llamaswitch._catalog import ModelInfo
from llamaswitch._time import now
from llamaswitch._vocabulary import to_data
from llamaswitch.gateway.memory import MemoryNeed
from llamaswitch.servers.config import ServerConfig

__all__ = ["MEMORY_FIELDS", "MeasurementStore", "memory_key"]

logger = logging.getLogger(__name__)

#: The ServerConfig fields that change how much memory a server takes.
MEMORY_FIELDS = (
    "ctx_size", "batch_size", "ubatch_size", "n_gpu_layers", "flash_attn", "split_mode",
    "tensor_split", "main_gpu", "mlock", "cache_type_k", "cache_type_v", "parallel",
    "no_mmap", "n_cpu_moe", "embeddings", "pooling", "reranking", "mmproj",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    model_key TEXT NOT NULL,
    config_key TEXT NOT NULL,
    ram_mib REAL NOT NULL,
    vram_json TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    measured_at TEXT NOT NULL,
    PRIMARY KEY (model_key, config_key)
)
"""


def memory_key(info: ModelInfo, config: ServerConfig) -> tuple[str, str]:
    """``(model key, config key)`` of a measurement."""
    stat_mtime = 0
    with contextlib.suppress(OSError):
        stat_mtime = info.path.stat().st_mtime_ns
    model = f"{info.path}|{info.size}|{stat_mtime}"
    data = to_data(config)
    config_key = json.dumps({k: data[k] for k in MEMORY_FIELDS if k in data}, sort_keys=True)
    return model, config_key


class MeasurementStore:
    """Peak memory per model and memory config (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # Every stored figure by (model key, config key): read at open, kept by record.
        self._known: dict[tuple[str, str], MemoryNeed] = {}

    def open(self) -> None:
        """Create the database now and read what it holds (a blocking call): the first
        load of a model then pays for neither. A database that cannot be made or read
        is only logged: loads then use estimates, as :meth:`get` does."""
        try:
            with self._connection() as db:
                rows = db.execute(
                    "SELECT model_key, config_key, ram_mib, vram_json FROM measurements"
                ).fetchall()
        except (sqlite3.Error, OSError) as exc:
            logger.warning("memory measurements unavailable (%s): using estimates", exc)
            return
        for model, config_key, ram, vram_json in rows:
            need = _need(ram, vram_json)
            if need is not None:
                self._known[model, config_key] = need

    def known(self, info: ModelInfo, config: ServerConfig) -> MemoryNeed | None:
        """:meth:`get` from the copy in memory (read at :meth:`open`, kept by
        :meth:`record`): no query, so callers on the event loop may use it."""
        return self._known.get(memory_key(info, config))

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False)
                self._db.execute(_SCHEMA)
            yield self._db

    def get(self, info: ModelInfo, config: ServerConfig) -> MemoryNeed | None:
        """The figure measured for this model and memory config, or None."""
        model, config_key = memory_key(info, config)
        try:
            with self._connection() as db:
                row = db.execute(
                    "SELECT ram_mib, vram_json FROM measurements "
                    "WHERE model_key = ? AND config_key = ?", (model, config_key)
                ).fetchone()  # fmt: skip
        except sqlite3.Error as exc:
            logger.warning("memory measurements unreadable (%s): using estimates", exc)
            return None
        return None if row is None else _need(row[0], row[1])

    def record(
        self,
        info: ModelInfo,
        config: ServerConfig,
        *,
        ram_mib: float,
        vram_mib: Mapping[int, float],
        binary_version: str,
    ) -> MemoryNeed:
        """Keep the peak of this figure and the stored one; return what is stored now."""
        model, config_key = memory_key(info, config)
        stored = self.get(info, config)
        if stored is not None:
            ram_mib = max(ram_mib, stored.ram_mib)
            gpus = set(vram_mib) | set(stored.vram_mib)
            vram_mib = {g: max(vram_mib.get(g, 0.0), stored.vram_mib.get(g, 0.0)) for g in gpus}
        try:
            with self._connection() as db, db:
                db.execute(
                    "INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                    (model, config_key, ram_mib, json.dumps({str(k): v for k, v in
                     vram_mib.items()}), binary_version, now().isoformat()),
                )  # fmt: skip
        except sqlite3.Error as exc:
            logger.warning("memory measurement of %s not saved: %s", info.name, exc)
        need = MemoryNeed(ram_mib=ram_mib, vram_mib=dict(vram_mib), source="measured")
        self._known[model, config_key] = need
        return need

    def close(self) -> None:
        """Close the database (it opens again on the next call)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _need(ram_mib: object, vram_json: object) -> MemoryNeed | None:
    """A stored row's figure; None for one that does not read (a hand-edited file)."""
    try:
        vram = {int(k): float(v) for k, v in json.loads(str(vram_json)).items()}
        return MemoryNeed(ram_mib=float(str(ram_mib)), vram_mib=vram, source="measured")
    except (ValueError, AttributeError, TypeError):
        return None
