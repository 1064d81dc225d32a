"""What a tune searches: :class:`TuneSpace`, written in llama-bench's own vocabulary.

A space is a :class:`~llamaswitch.BenchConfig`-shaped mapping: a field given several
values is a dimension to search (``{"threads": [1, 2, 4], "batch_size": [256, 512]}``), a
field given one value is fixed. Each field is checked by BenchConfig's own rules and
named on failure (``space.threads[1]``); only fields a preset can hold can be tuned
(:data:`~llamaswitch.tuning.mapping.TUNABLE_FIELDS`), and only values both binaries
honour (:func:`check_space`, through their capability records).

:func:`default_space` derives one from the model and the binaries: threads up to the
physical cores, batch and micro-batch sizes up to the prompt size, GPU layers where a
GPU exists, flash attention, the K and V cache types the model's head size allows, MoE
experts on the CPU for MoE models, split modes with several GPUs, and the load mode.

>>> space = TuneSpace.from_data({"threads": [1, 2], "batch_size": [64, 128, 256],
...                               "ubatch_size": 64})
>>> space.size, [d.name for d in space.dimensions], dict(space.fixed)
(6, ['threads', 'batch_size'], {'ubatch_size': 64})
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from llamaswitch._capabilities import Capabilities
from llamaswitch._catalog import ModelInfo
from llamaswitch._errors import ConfigValidationError, UnsupportedOptionError
from llamaswitch._vocabulary import from_data, specs
from llamaswitch.bench.config import BenchConfig
from llamaswitch.servers.config import ServerConfig
from llamaswitch.tuning.mapping import TUNABLE_FIELDS, to_server_config
from llamaswitch.tuning.objective import Objective

__all__ = [
    "CACHE_BLOCK_SIZES",
    "Dimension",
    "TuneSpace",
    "check_space",
    "default_space",
    "head_sizes",
]

#: Elements per block of each KV cache type: a quantized cache needs a head size that
#: the block divides (llama.cpp refuses the context otherwise).
CACHE_BLOCK_SIZES: Final[Mapping[str, int]] = {
    "f32": 1,
    "f16": 1,
    "bf16": 1,
    "q8_0": 32,
    "q4_0": 32,
    "q4_1": 32,
    "iq4_nl": 32,
    "q5_0": 32,
    "q5_1": 32,
}
_OBJECTIVE_FIELDS: Final = ("n_prompt", "n_gen", "n_depth", "pg")
_TUNE_FIELDS: Final = ("repetitions",)
_BENCH_FIELDS: Final = frozenset(specs(BenchConfig))
# Where the default space's batch sizes come from: llama.cpp's usual powers of two.
_BATCH_SIZES: Final = (128, 256, 512, 1024, 2048)
_UBATCH_SIZES: Final = (64, 128, 256, 512)
_CACHE_TYPES: Final = ("f16", "q8_0", "q4_0")
# Any port: the server argv is built only to ask the binary whether it takes a setting.
_PROBE_PORT: Final = 8091


@attrs.frozen
class Dimension:
    """One field to search and its candidate values (in the order given)."""

    name: str
    values: tuple[Any, ...]

    @property
    def step(self) -> int | None:
        """The step of an evenly spaced rising run of whole numbers (3 values or more),
        which a sampler can treat as ordered; None for other values."""
        values = self.values
        if len(values) < 3 or not all(type(v) is int for v in values):
            return None
        steps = {b - a for a, b in itertools.pairwise(values)}
        if len(steps) != 1:
            return None
        step = next(iter(steps))
        return step if step > 0 else None


@attrs.frozen
class TuneSpace:
    """The dimensions a tune searches and the fields it keeps fixed."""

    dimensions: tuple[Dimension, ...]
    fixed: Mapping[str, Any] = attrs.field(factory=dict)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, path: str = "space") -> TuneSpace:
        """A space from its JSON form, each field checked by BenchConfig's own rules.

        Every problem is reported at once, each naming its field (``space.threads``).
        """
        if not isinstance(data, Mapping):
            raise ConfigValidationError([(path, f"must be a JSON object, got {data!r}")])
        errors: list[tuple[str, str]] = []
        values: dict[str, tuple[Any, ...]] = {}
        for key, value in data.items():
            where = f"{path}.{key}"
            if key not in _BENCH_FIELDS:
                errors.append((where, "unknown field (tunable: " + ", ".join(TUNABLE_FIELDS) + ")"))
                continue
            if value is None:
                continue
            reason = _untunable(key)
            if reason is not None:
                errors.append((where, reason))
                continue
            try:
                config = from_data(BenchConfig, {key: value}, path=path)
            except ConfigValidationError as exc:
                errors += exc.errors
                continue
            given = getattr(config, key)
            if given is not None:
                values[key] = given
        if errors:
            raise ConfigValidationError(errors)
        return cls.from_values(values, path=path)

    @classmethod
    def from_config(cls, config: BenchConfig, *, path: str = "space") -> TuneSpace:
        """A space from a BenchConfig whose swept fields are the dimensions."""
        errors = []
        values: dict[str, tuple[Any, ...]] = {}
        for key in specs(BenchConfig):
            value = getattr(config, key)
            if value is None:
                continue
            reason = _untunable(key)
            if reason is not None:
                errors.append((f"{path}.{key}", reason))
            else:
                values[key] = value
        if errors:
            raise ConfigValidationError(errors)
        return cls.from_values(values, path=path)

    @classmethod
    def from_values(
        cls, values: Mapping[str, tuple[Any, ...]], *, path: str = "space"
    ) -> TuneSpace:
        """A space from each tunable field's candidate values (BenchConfig's shapes)."""
        if "mmap" in values and "load_mode" in values:
            raise ConfigValidationError(
                [(f"{path}.load_mode", "set either mmap or load_mode, not both (both map to -lm)")]
            )
        dimensions, fixed = [], {}
        for name in TUNABLE_FIELDS:
            if name not in values:
                continue
            unique = tuple(dict.fromkeys(values[name]))
            if len(unique) > 1:
                dimensions.append(Dimension(name, unique))
            else:
                fixed[name] = unique[0]
        if not dimensions:
            reason = (
                "names nothing to tune: give a field two or more values, or leave the space "
                "out for the one derived from the model"
                if not fixed
                else "gives every field one value: there is nothing to choose between; give "
                "a field two or more values"
            )
            raise ConfigValidationError([(path, reason)])
        return cls(tuple(dimensions), fixed)

    # -- what it holds --------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many points the space has."""
        return math.prod(len(d.values) for d in self.dimensions)

    def points(self) -> Iterator[dict[str, Any]]:
        """Every point, as ``{field: value}`` of the dimensions."""
        names = [d.name for d in self.dimensions]
        for combination in itertools.product(*(d.values for d in self.dimensions)):
            yield dict(zip(names, combination, strict=True))

    def key(self, point: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        """A hashable identity of a point (for telling a repeated suggestion)."""
        return tuple((d.name, repr(point.get(d.name))) for d in self.dimensions)

    def settings(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The fixed fields and the point's values: what a trial runs with."""
        return {**self.fixed, **point}

    def to_data(self) -> dict[str, Any]:
        """The JSON form: a list per dimension, the value of each fixed field."""
        data: dict[str, Any] = {d.name: list(d.values) for d in self.dimensions}
        data.update(self.fixed)
        return {name: data[name] for name in TUNABLE_FIELDS if name in data}

    def bench_config(
        self, point: Mapping[str, Any], objective: Objective, repetitions: int
    ) -> BenchConfig:
        """The llama-bench config of one trial: its settings, the objective's two tests."""
        return BenchConfig(
            **self.settings(point),
            **objective.bench_fields(),
            repetitions=repetitions,
            output="json",
        )


def _untunable(key: str) -> str | None:
    if key in TUNABLE_FIELDS:
        return None
    if key in _OBJECTIVE_FIELDS:
        return "is set by the objective (objective.n_prompt, n_gen, n_depth), not tuned"
    if key in _TUNE_FIELDS:
        return "is set by the tune's own repetitions and max_repetitions"
    return (
        "cannot be tuned: a preset has no llama-server setting for it (tunable: "
        + ", ".join(TUNABLE_FIELDS)
        + ")"
    )


# -- what the binaries honour ---------------------------------------------------------------


def _bench_problem(name: str, values: tuple[Any, ...], caps: Capabilities, model: Path) -> None:
    BenchConfig.from_dict({name: list(values)}).to_argv(caps, model)


def _server_config(name: str, value: Any, base: ServerConfig, path: str) -> ServerConfig:
    try:
        return to_server_config({name: value}, base)
    except ValueError as exc:
        raise ConfigValidationError([(f"{path}.{name}", str(exc))]) from None


def check_space(
    space: TuneSpace,
    *,
    bench: Capabilities,
    server: Capabilities,
    model: Path,
    base: ServerConfig,
    path: str = "space",
) -> None:
    """Refuse what llama-bench or llama-server cannot honour, naming the field.

    Raises :class:`~llamaswitch.UnsupportedOptionError` (with the binary and its
    version) or :class:`~llamaswitch.ConfigValidationError` for a value no preset can
    hold.
    """
    fields = {d.name: d.values for d in space.dimensions}
    fields.update({name: (value,) for name, value in space.fixed.items()})
    for name, values in fields.items():
        _bench_problem(name, values, bench, model)
        for value in values:
            config = _server_config(name, value, base, path)
            config.to_argv(server, model, "127.0.0.1", _PROBE_PORT)


def _honoured(
    name: str, value: Any, bench: Capabilities, server: Capabilities, model: Path
) -> bool:
    try:
        check_space(
            TuneSpace((), {name: value}),
            bench=bench,
            server=server,
            model=model,
            base=ServerConfig(),
        )
    except (UnsupportedOptionError, ConfigValidationError):
        return False
    return True


# -- the default space --------------------------------------------------------------------


def head_sizes(info: ModelInfo) -> tuple[int | None, int | None]:
    """The model's key and value head sizes, from its header (None when it does not say)."""
    heads = info.head_count or 0
    derived = info.embedding_length // heads if info.embedding_length and heads else None
    key = info.key_length or derived
    return key, info.value_length or key


def _cache_types(head_size: int | None) -> list[str]:
    if not head_size:
        return ["f16"]
    return [t for t in _CACHE_TYPES if head_size % CACHE_BLOCK_SIZES[t] == 0]


def default_space(
    info: ModelInfo,
    *,
    bench: Capabilities,
    server: Capabilities,
    physical_cores: int,
    gpu_count: int,
    objective: Objective,
) -> dict[str, Any]:
    """The space derived from the model, the binaries and the machine (its JSON form).

    Only dimensions with two or more values both binaries honour are included.
    """
    layers = info.block_count or 0
    cache_k, cache_v = (_cache_types(size) for size in head_sizes(info))
    candidates: dict[str, list[Any]] = {
        "threads": list(range(1, max(1, physical_cores) + 1)),
        "batch_size": [b for b in _BATCH_SIZES if b <= objective.n_prompt],
        "ubatch_size": [u for u in _UBATCH_SIZES if u <= objective.n_prompt],
        "flash_attn": [False, True],
        "cache_type_k": cache_k,
        "cache_type_v": cache_v,
    }
    if gpu_count:
        # llama.cpp counts the output layer as one more: 0 ... layers + 1 is all of it.
        candidates["n_gpu_layers"] = list(range(0, layers + 2))
    if info.expert_count and layers:
        candidates["n_cpu_moe"] = list(range(0, layers + 1))
    if gpu_count > 1:
        candidates["split_mode"] = ["layer", "row", "tensor"]
    if bench.has("-lm", "--load-mode"):
        candidates["load_mode"] = ["mmap", "none"]
    else:
        candidates["mmap"] = [True, False]
    space: dict[str, Any] = {}
    for name in TUNABLE_FIELDS:
        values = [
            v for v in candidates.get(name, ()) if _honoured(name, v, bench, server, info.path)
        ]
        if len(values) > 1:
            space[name] = values
    return space
