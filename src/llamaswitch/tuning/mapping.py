"""From what llama-bench measured to what llama-server runs: the one place that maps them.

A tune measures with llama-bench (:class:`~llamaswitch.BenchConfig` fields) and saves the
winner as a preset that llama-server runs (:class:`~llamaswitch.ServerConfig` fields).
Each tunable llama-bench field has one rule here; a field without a rule cannot be tuned,
since its winning value could not be saved.

>>> to_server_config({"threads": 4, "mmap": False, "n_gpu_layers": -1}, ServerConfig()).to_dict()
{'threads': 4, 'n_gpu_layers': 'all', 'no_mmap': True}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from llamaswitch.servers.config import ServerConfig

__all__ = ["SERVER_KEYS", "TUNABLE_FIELDS", "owned_keys", "server_settings", "to_server_config"]


def _same(name: str) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {name: value}


def _gpu_layers(value: Any) -> dict[str, Any]:
    # llama-bench's -1 is "every layer"; ServerConfig spells that "all" for both dialects.
    return {"n_gpu_layers": "all" if isinstance(value, int) and value < 0 else value}


def _tensor_split(value: Any) -> dict[str, Any]:
    return {"tensor_split": tuple(float(p) for p in re.split(r"[,/;]", str(value)))}


def _mmap(value: Any) -> dict[str, Any]:
    # Memory-mapping is llama-server's default in both dialects: only "off" is written.
    return {"no_mmap": None if value else True}


#: llama-bench's load modes as ServerConfig's two switches (None: llama-server's default,
#: which is mmap; ``auto`` is mmap where the device supports it).
_LOAD_MODES: Final[Mapping[str, dict[str, Any]]] = {
    "auto": {"no_mmap": None, "mlock": None},
    "mmap": {"no_mmap": None, "mlock": None},
    "none": {"no_mmap": True, "mlock": None},
    "mlock": {"no_mmap": True, "mlock": True},
    "mmap+mlock": {"no_mmap": None, "mlock": True},
}


def _load_mode(value: Any) -> dict[str, Any]:
    if value not in _LOAD_MODES:
        raise ValueError(
            f"load_mode {value} has no llama-server setting a preset can hold "
            f"(it takes {', '.join(_LOAD_MODES)})"
        )
    return dict(_LOAD_MODES[value])


#: How each tunable llama-bench field becomes ServerConfig fields (None: unset).
_RULES: Final[Mapping[str, Callable[[Any], dict[str, Any]]]] = {
    "threads": _same("threads"),
    "batch_size": _same("batch_size"),
    "ubatch_size": _same("ubatch_size"),
    "n_gpu_layers": _gpu_layers,
    "flash_attn": _same("flash_attn"),
    "cache_type_k": _same("cache_type_k"),
    "cache_type_v": _same("cache_type_v"),
    "n_cpu_moe": _same("n_cpu_moe"),
    "split_mode": _same("split_mode"),
    "main_gpu": _same("main_gpu"),
    "tensor_split": _tensor_split,
    "mmap": _mmap,
    "load_mode": _load_mode,
}

#: The llama-bench fields a tune can search over, in the order they are shown.
TUNABLE_FIELDS: Final = tuple(_RULES)
#: The ServerConfig fields each tunable field decides (a preset's keys a tune owns).
SERVER_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    **{name: (name,) for name in _RULES},
    "n_gpu_layers": ("n_gpu_layers",),
    "mmap": ("no_mmap",),
    "load_mode": ("no_mmap", "mlock"),
}


def server_settings(field: str, value: Any) -> dict[str, Any]:
    """The ServerConfig fields (None: unset) one llama-bench value becomes.

    Raises ``KeyError`` for a field that cannot be tuned and ``ValueError`` for a value
    llama-server has no setting for.
    """
    return _RULES[field](value)


def owned_keys(fields: Iterable[str]) -> set[str]:
    """The ServerConfig fields that the llama-bench ``fields`` decide."""
    return {key for field in fields for key in SERVER_KEYS[field]}


def to_server_config(point: Mapping[str, Any], base: ServerConfig) -> ServerConfig:
    """``base`` with the llama-server settings of ``point`` (llama-bench values) on top."""
    data = base.to_dict()
    for field, value in point.items():
        for key, setting in server_settings(field, value).items():
            if setting is None:
                data.pop(key, None)
            else:
                data[key] = setting
    return ServerConfig.from_dict(data)
