"""Which models run together: a pure placement policy, with no process and no clock.

:class:`PlacementPolicy` answers one question: model ``X`` needs this much memory, these
models are resident, this is the budget; what must happen before ``X`` can load? Its
:class:`Plan` is one of

- ``ready``: ``X`` is resident already;
- ``load``: load ``X`` now, after unloading the idle models in ``evict``;
- ``wait``: the models in ``wait_for`` have requests in flight and must drain first (the
  idle ones in ``evict`` go now); plan again once they are idle;
- ``refuse``: ``X`` cannot fit even with every model that may go gone: too large for the
  budget alone, or the pinned models hold the rest. ``reason`` gives the figures.

The rules it keeps (tested with Hypothesis in ``tests/test_placement.py``):

- a ``load`` never exceeds a budget: what stays plus ``X`` fits in RAM, in each GPU, and in
  the count limit;
- it never evicts a busy model (one with requests in flight, or loading) and never a
  pinned one: busy models are only ever waited for;
- it never deadlocks: a ``wait`` names at least one busy model, and once those drain the
  same question gets a ``load``;
- victims go idle first, least recently used first, and only models whose memory helps.

>>> from llamaswitch.gateway.memory import MemoryNeed
>>> policy = PlacementPolicy()
>>> budget = Budget(ram_mib=1000, max_models=None)
>>> old = Resident("old", MemoryNeed(ram_mib=600), busy=False, last_used=1.0)
>>> plan = policy.place("new", MemoryNeed(ram_mib=500), [old], budget)
>>> plan.action, plan.evict
('load', ('old',))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import attrs

from llamaswitch.gateway.memory import MemoryNeed

__all__ = ["Budget", "PlacementPolicy", "Plan", "Resident"]

PlanAction = Literal["ready", "load", "wait", "refuse"]

# Figures within this much of a budget count as fitting: estimates are floats in MiB.
_EPSILON_MIB = 1e-6


@attrs.frozen
class Budget:
    """What the models may use together: RAM and VRAM per GPU index in MiB, and a count.

    ``None`` is no limit. A GPU missing from ``vram_mib`` has no budget: a model that
    needs memory there does not fit.
    """

    ram_mib: float | None = None
    vram_mib: Mapping[int, float] = attrs.field(factory=dict)
    max_models: int | None = None


@attrs.frozen
class Resident:
    """A model that is loaded or loading.

    ``busy``: requests in flight, or still loading (it cannot be unloaded now, only
    waited for). ``last_used`` orders victims (smaller: used longer ago).
    """

    name: str
    need: MemoryNeed
    busy: bool = False
    pinned: bool = False
    last_used: float = 0.0


@attrs.frozen
class Plan:
    """What loading ``model`` takes (see the module docstring for the actions)."""

    model: str
    action: PlanAction
    reason: str
    need: MemoryNeed
    evict: tuple[str, ...] = ()
    wait_for: tuple[str, ...] = ()
    #: Per resource (``ram``, ``gpu0``, ..., ``models``): used now, budget, and what the
    #: model needs; budget None = no limit.
    figures: Mapping[str, Mapping[str, float | None]] = attrs.field(factory=dict)


class PlacementPolicy:
    """Least-recently-used eviction within memory budgets (see the module docstring).

    Subclass and override :meth:`victim_order` to choose victims differently; the rules
    the gateway relies on are kept by :meth:`place` itself.
    """

    def victim_order(self, candidates: Sequence[Resident]) -> list[Resident]:
        """The order in which candidates are considered: idle first, then least recently
        used first."""
        return sorted(candidates, key=lambda r: (r.busy, r.last_used, r.name))

    def place(
        self, model: str, need: MemoryNeed, residents: Iterable[Resident], budget: Budget
    ) -> Plan:
        """Decide what loading ``model`` (which needs ``need``) takes now."""
        residents = list(residents)
        figures = _figures(need, residents, budget)
        if any(r.name == model for r in residents):
            return Plan(model, "ready", f"{model} is loaded", need, figures=figures)
        alone = _over(need, [], budget)
        if alone:
            reason = f"{model} cannot fit even alone: " + "; ".join(alone.values())
            return Plan(model, "refuse", reason, need, figures=figures)
        staying = list(residents)
        chosen: list[Resident] = []
        for candidate in self.victim_order([r for r in residents if not r.pinned]):
            over = _over(need, staying, budget)
            if not over:
                break
            if _helps(candidate, over):
                staying.remove(candidate)
                chosen.append(candidate)
        over = _over(need, staying, budget)
        if over:
            held = [r for r in staying if r.pinned]
            names = ", ".join(f"{r.name} ({_describe(r.need)})" for r in held) or "nothing"
            return Plan(model, "refuse",
                        f"{model} cannot fit beside the pinned models ({names}): "
                        + "; ".join(over.values()), need, figures=figures)  # fmt: skip
        evict = tuple(r.name for r in chosen if not r.busy)
        wait_for = tuple(r.name for r in chosen if r.busy)
        if wait_for:
            return Plan(model, "wait", f"{model} needs the room of {', '.join(wait_for)}, "
                        "which have requests in flight: waiting for them to finish",
                        need, evict=evict, wait_for=wait_for, figures=figures)  # fmt: skip
        reason = (f"{model} fits after unloading {', '.join(evict)} (idle, least recently "
                  "used first)" if evict else f"{model} fits")  # fmt: skip
        return Plan(model, "load", reason, need, evict=evict, figures=figures)


def _over(need: MemoryNeed, staying: Sequence[Resident], budget: Budget) -> dict[str, str]:
    """What ``need`` beside ``staying`` exceeds: resource (``models``, ``ram``, ``gpuN``)
    to a phrase with the figures; empty when it fits."""
    short: dict[str, str] = {}
    if budget.max_models is not None and len(staying) + 1 > budget.max_models:
        short["models"] = f"at most {budget.max_models} models at once ({len(staying)} loaded)"
    # Only what the model adds to counts: a resource already over its budget (by
    # models the gateway may not unload) does not keep out a model that needs none of it.
    if budget.ram_mib is not None and need.ram_mib > 0:
        used = sum(r.need.ram_mib for r in staying)
        if used + need.ram_mib > budget.ram_mib + _EPSILON_MIB:
            short["ram"] = _phrase("RAM", need.ram_mib, used, budget.ram_mib)
    for gpu, mib in sorted(need.vram_mib.items()):
        if mib <= 0:
            continue
        limit = budget.vram_mib.get(gpu)
        if limit is None:
            short[f"gpu{gpu}"] = f"needs {mib:.0f} MiB on GPU {gpu}, which has no budget"
            continue
        used = sum(r.need.vram_mib.get(gpu, 0.0) for r in staying)
        if used + mib > limit + _EPSILON_MIB:
            short[f"gpu{gpu}"] = _phrase(f"GPU {gpu}", mib, used, limit)
    return short


def _phrase(where: str, need: float, used: float, limit: float) -> str:
    return (f"needs {need:.0f} MiB of {where}, {used:.0f} MiB of its {limit:.0f} MiB "
            "budget are in use")  # fmt: skip


def _helps(candidate: Resident, short: Mapping[str, str]) -> bool:
    """Whether unloading ``candidate`` frees something that is short."""
    if "models" in short:
        return True
    if "ram" in short and candidate.need.ram_mib > 0:
        return True
    return any(mib > 0 and f"gpu{gpu}" in short for gpu, mib in candidate.need.vram_mib.items())


def _describe(need: MemoryNeed) -> str:
    parts = [f"{need.ram_mib:.0f} MiB RAM"]
    parts += [f"{mib:.0f} MiB GPU {gpu}" for gpu, mib in sorted(need.vram_mib.items()) if mib]
    return ", ".join(parts)


def _figures(
    need: MemoryNeed, residents: Sequence[Resident], budget: Budget
) -> dict[str, dict[str, float | None]]:
    figures: dict[str, dict[str, float | None]] = {
        "ram": {"used_mib": sum(r.need.ram_mib for r in residents),
                "budget_mib": budget.ram_mib, "need_mib": need.ram_mib},
        "models": {"used": float(len(residents)),
                   "budget": None if budget.max_models is None else float(budget.max_models),
                   "need": 1.0},
    }  # fmt: skip
    for gpu in sorted(set(budget.vram_mib) | set(need.vram_mib)):
        figures[f"gpu{gpu}"] = {
            "used_mib": sum(r.need.vram_mib.get(gpu, 0.0) for r in residents),
            "budget_mib": budget.vram_mib.get(gpu),
            "need_mib": need.vram_mib.get(gpu, 0.0),
        }
    return figures
