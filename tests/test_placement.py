"""The placement policy: never over a budget, never a busy or pinned victim, never stuck.

Pure: no llama.cpp, no clock. Hypothesis draws residents, budgets and a newcomer.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch.gateway.memory import MemoryNeed
from llamaswitch.gateway.policy import Budget, PlacementPolicy, Plan, Resident

POLICY = PlacementPolicy()
GPUS = (0, 1)

mib = st.floats(min_value=0, max_value=4000, allow_nan=False, allow_infinity=False)


@st.composite
def needs(draw: st.DrawFn) -> MemoryNeed:
    gpus = draw(st.lists(st.sampled_from(GPUS), unique=True, max_size=2))
    return MemoryNeed(ram_mib=draw(mib), vram_mib={g: draw(mib) for g in gpus})


@st.composite
def residents(draw: st.DrawFn) -> list[Resident]:
    count = draw(st.integers(0, 6))
    return [
        Resident(
            f"m{i}",
            draw(needs()),
            busy=draw(st.booleans()),
            pinned=draw(st.booleans()),
            last_used=draw(st.floats(0, 100)),
        )
        for i in range(count)
    ]


budgets = st.builds(
    Budget,
    ram_mib=st.one_of(st.none(), st.floats(0, 12000)),
    vram_mib=st.fixed_dictionaries({0: st.floats(0, 12000), 1: st.floats(0, 12000)}),
    max_models=st.one_of(st.none(), st.integers(1, 6)),
)


def fits(need: MemoryNeed, staying: list[Resident], budget: Budget) -> bool:
    if budget.max_models is not None and len(staying) + 1 > budget.max_models:
        return False
    # What the newcomer adds to must fit; a resource it does not use may be over already.
    ram = sum(r.need.ram_mib for r in staying) + need.ram_mib
    if budget.ram_mib is not None and need.ram_mib > 0 and ram > budget.ram_mib + 1e-6:
        return False
    for gpu, mib in need.vram_mib.items():
        if mib <= 0:
            continue
        used = sum(r.need.vram_mib.get(gpu, 0.0) for r in staying)
        if used + mib > budget.vram_mib.get(gpu, -1.0) + 1e-6:
            return False
    return True


def after(plan: Plan, present: list[Resident]) -> list[Resident]:
    gone = set(plan.evict) | set(plan.wait_for)
    return [r for r in present if r.name not in gone]


@given(residents(), needs(), budgets)
def test_a_load_never_exceeds_a_budget(present: list[Resident], need: MemoryNeed,
                                      budget: Budget) -> None:  # fmt: skip
    plan = POLICY.place("new", need, present, budget)
    if plan.action == "load":
        assert fits(need, after(plan, present), budget), plan


@given(residents(), needs(), budgets)
def test_busy_and_pinned_models_are_never_evicted(present: list[Resident], need: MemoryNeed,
                                                 budget: Budget) -> None:  # fmt: skip
    plan = POLICY.place("new", need, present, budget)
    by_name = {r.name: r for r in present}
    for name in plan.evict:
        assert not by_name[name].busy, plan
        assert not by_name[name].pinned, plan
    for name in plan.wait_for:
        assert by_name[name].busy, plan
        assert not by_name[name].pinned, plan


@given(residents(), needs(), budgets)
def test_a_wait_always_leads_to_a_load_once_its_models_drain(
    present: list[Resident], need: MemoryNeed, budget: Budget
) -> None:
    plan = POLICY.place("new", need, present, budget)
    if plan.action != "wait":
        return
    assert plan.wait_for, plan
    drained = [attrs.evolve(r, busy=False) if r.name in plan.wait_for else r for r in present]
    drained = [r for r in drained if r.name not in plan.evict]  # unloaded meanwhile
    again = POLICY.place("new", need, drained, budget)
    assert again.action == "load", again
    assert fits(need, after(again, drained), budget)


@given(residents(), needs(), budgets)
def test_refusal_happens_exactly_when_nothing_could_make_room(
    present: list[Resident], need: MemoryNeed, budget: Budget
) -> None:
    plan = POLICY.place("new", need, present, budget)
    pinned = [r for r in present if r.pinned]
    impossible = not fits(need, pinned, budget)
    assert (plan.action == "refuse") == impossible, plan


@given(residents(), needs(), budgets)
def test_nothing_is_evicted_when_the_model_fits(
    present: list[Resident], need: MemoryNeed, budget: Budget
) -> None:
    plan = POLICY.place("new", need, present, budget)
    if fits(need, present, budget):
        assert plan.action == "load"
        assert plan.evict == ()
        assert plan.wait_for == ()


def test_a_resident_model_is_ready() -> None:
    present = [Resident("a", MemoryNeed(ram_mib=10))]
    plan = POLICY.place("a", MemoryNeed(ram_mib=10), present, Budget(ram_mib=5))
    assert plan.action == "ready"


def test_idle_models_go_first_least_recently_used_first() -> None:
    present = [
        Resident("busy-old", MemoryNeed(ram_mib=400), busy=True, last_used=0.0),
        Resident("idle-new", MemoryNeed(ram_mib=400), last_used=9.0),
        Resident("idle-old", MemoryNeed(ram_mib=400), last_used=1.0),
    ]
    plan = POLICY.place("x", MemoryNeed(ram_mib=400), present, Budget(ram_mib=1300))
    assert (plan.action, plan.evict) == ("load", ("idle-old",))
    plan = POLICY.place("x", MemoryNeed(ram_mib=800), present, Budget(ram_mib=1300))
    assert (plan.action, plan.evict) == ("load", ("idle-old", "idle-new"))
    plan = POLICY.place("x", MemoryNeed(ram_mib=1200), present, Budget(ram_mib=1300))
    assert (plan.action, plan.evict, plan.wait_for) == (
        "wait",
        ("idle-old", "idle-new"),
        ("busy-old",),
    )


def test_a_victim_whose_memory_does_not_help_stays() -> None:
    # GPU 0 is short; the idle CPU-only model would free RAM, which is not short.
    present = [
        Resident("cpu-only", MemoryNeed(ram_mib=500), last_used=0.0),
        Resident("on-gpu", MemoryNeed(ram_mib=10, vram_mib={0: 900}), last_used=5.0),
    ]
    budget = Budget(ram_mib=10_000, vram_mib={0: 1000})
    plan = POLICY.place("x", MemoryNeed(ram_mib=10, vram_mib={0: 500}), present, budget)
    assert (plan.action, plan.evict) == ("load", ("on-gpu",))


@pytest.mark.parametrize(
    ("need", "pinned", "words"),
    [
        (MemoryNeed(ram_mib=2000), [], "cannot fit even alone: needs 2000 MiB of RAM"),
        (MemoryNeed(ram_mib=10, vram_mib={0: 3000}), [], "needs 3000 MiB of GPU 0"),
        (MemoryNeed(ram_mib=600), [Resident("keep", MemoryNeed(ram_mib=600), pinned=True)],
         "beside the pinned models (keep (600 MiB RAM))"),
    ],
)  # fmt: skip
def test_refusals_give_the_figures(need: MemoryNeed, pinned: list[Resident], words: str) -> None:
    plan = POLICY.place("big", need, pinned, Budget(ram_mib=1000, vram_mib={0: 2000}))
    assert plan.action == "refuse"
    assert words in plan.reason, plan.reason


def test_the_count_limit_is_a_budget_too() -> None:
    present = [Resident("a", MemoryNeed(ram_mib=1), last_used=1.0)]
    plan = POLICY.place("b", MemoryNeed(ram_mib=1), present, Budget(max_models=1))
    assert (plan.action, plan.evict) == ("load", ("a",))
    assert plan.figures["models"] == {"used": 1.0, "budget": 1.0, "need": 1.0}
