"""What a tune maximises and how it tells trials apart: the score of each objective and its
standard error, figures merged over more repetitions, the rule that asks for them, and
the Pareto front of prompt against generation speed."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamaswitch._errors import ConfigValidationError
from llamaswitch.bench.parser import BenchResult
from llamaswitch.tuning.objective import Figure, Measurement, Objective, measure, needs_more
from llamaswitch.tuning.pareto import pareto_front


def m(pp: float, tg: float, *, pp_sd: float = 0.0, tg_sd: float = 0.0, n: int = 4) -> Measurement:
    return Measurement(Figure.of(pp, pp_sd, n), Figure.of(tg, tg_sd, n))


# -- the score ----------------------------------------------------------------------------


def test_tg_and_pp_score_their_own_speed() -> None:
    sample = m(1000.0, 50.0, pp_sd=20.0, tg_sd=2.0, n=4)
    assert Objective(metric="tg").score(sample) == 50.0
    assert Objective(metric="pp").score(sample) == 1000.0
    assert Objective(metric="tg").score_error(sample) == pytest.approx(1.0)  # 2 / sqrt(4)
    assert Objective(metric="pp").score_error(sample) == pytest.approx(10.0)


def test_a_mix_is_the_weighted_geometric_mean() -> None:
    sample = m(1000.0, 10.0)
    assert Objective(metric="mix").score(sample) == pytest.approx(100.0)
    assert Objective(metric="mix", pp_weight=0.25).score(sample) == pytest.approx(
        1000.0**0.25 * 10.0**0.75
    )


def test_a_mix_scales_with_each_speed_by_its_weight() -> None:
    # Why geometric: doubling generation counts as much whatever the prompt speed is.
    goal = Objective(metric="mix", pp_weight=0.3)
    assert goal.score(m(5000.0, 20.0)) / goal.score(m(5000.0, 10.0)) == pytest.approx(2**0.7)
    assert goal.score(m(50.0, 20.0)) / goal.score(m(50.0, 10.0)) == pytest.approx(2**0.7)


def test_a_mixs_error_propagates_both_relative_errors() -> None:
    goal = Objective(metric="mix", pp_weight=0.5)
    sample = m(400.0, 100.0, pp_sd=4.0, tg_sd=2.0, n=4)
    expected = 200.0 * math.hypot(0.5 * 2.0 / 400.0, 0.5 * 1.0 / 100.0)
    assert goal.score_error(sample) == pytest.approx(expected)


def test_pp_weight_only_weighs_a_mix() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        Objective(metric="tg", pp_weight=0.5)
    assert caught.value.errors[0][0] == "pp_weight"


def test_an_objective_names_its_bad_fields() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        Objective.coerce({"metric": "speed", "n_prompt": 0, "n_gen": 16})
    assert [path for path, _ in caught.value.errors] == ["objective.metric", "objective.n_prompt"]
    with pytest.raises(ConfigValidationError, match=r"objective.n_gem: unknown field"):
        Objective.coerce({"n_gem": 16})


def test_the_objective_names_llama_benchs_tests_and_runs_them() -> None:
    goal = Objective(n_prompt=64, n_gen=16, n_depth=128)
    assert (goal.pp_test, goal.tg_test) == ("pp64 @ d128", "tg16 @ d128")
    assert goal.bench_fields() == {"n_prompt": 64, "n_gen": 16, "n_depth": 128}
    assert Objective(metric="mix", pp_weight=0.3).label == "0.3 pp512 + 0.7 tg128"


def _result(n_prompt: int, n_gen: int, avg: float, std: float,
            samples: tuple[float, ...] = ()) -> BenchResult:  # fmt: skip
    name = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"
    return BenchResult(test=name, n_prompt=n_prompt, n_gen=n_gen, avg_ts=avg, stddev_ts=std,
                       samples_ts=samples or None)  # fmt: skip


def test_a_measurement_takes_the_objectives_two_tests_from_a_tasks_results() -> None:
    goal = Objective(n_prompt=32, n_gen=8)
    results = [_result(16, 0, 1.0, 0.1), _result(32, 0, 900.0, 9.0, (891.0, 909.0)),
               _result(0, 8, 40.0, 1.0)]  # fmt: skip
    sample = measure(results, goal, repetitions=3)
    assert sample is not None
    assert (sample.pp.mean, sample.pp.count, sample.pp.samples) == (900.0, 2, (891.0, 909.0))
    assert (sample.tg.mean, sample.tg.count) == (40.0, 3)  # no samples: the repetitions
    assert measure(results[:2], goal, repetitions=3) is None  # no tg8


# -- more repetitions -----------------------------------------------------------------------


def test_merged_samples_give_the_figure_of_all_the_runs() -> None:
    first = Figure(10.0, statistics.stdev([9.0, 11.0]), 2, (9.0, 11.0))
    second = Figure(13.0, statistics.stdev([12.0, 14.0]), 2, (12.0, 14.0))
    merged = first.merge(second)
    assert merged.count == 4
    assert merged.mean == pytest.approx(11.5)
    assert merged.stddev == pytest.approx(statistics.stdev([9.0, 11.0, 12.0, 14.0]))


@given(
    st.lists(st.floats(1.0, 1e5), min_size=2, max_size=8),
    st.lists(st.floats(1.0, 1e5), min_size=2, max_size=8),
)
def test_figures_without_samples_merge_to_the_same_mean_and_spread(
    a: list[float], b: list[float]
) -> None:
    """Pooling means and spreads gives what the runs themselves give."""
    merged = Figure.of(statistics.mean(a), statistics.stdev(a), len(a)).merge(
        Figure.of(statistics.mean(b), statistics.stdev(b), len(b))
    )
    assert merged.count == len(a) + len(b)
    assert merged.mean == pytest.approx(statistics.mean(a + b), rel=1e-9)
    assert merged.stddev == pytest.approx(statistics.stdev(a + b), rel=1e-6, abs=1e-6)


def test_a_trial_too_close_to_the_best_to_tell_apart_gets_more_runs() -> None:
    goal = Objective(metric="tg")
    best = m(0, 100.0, tg_sd=4.0, n=4)  # error 2
    assert needs_more(m(0, 102.0, tg_sd=4.0, n=4), best, goal, max_repetitions=12)
    assert needs_more(m(0, 97.0, tg_sd=4.0, n=4), best, goal, max_repetitions=12)


def test_a_trial_clearly_apart_from_the_best_needs_no_more() -> None:
    goal = Objective(metric="tg")
    best = m(0, 100.0, tg_sd=4.0, n=4)
    # 20 t/s apart, combined error sqrt(2^2 + 2^2) = 2.8: seven errors apart.
    assert not needs_more(m(0, 120.0, tg_sd=4.0, n=4), best, goal, max_repetitions=12)
    assert not needs_more(m(0, 80.0, tg_sd=4.0, n=4), best, goal, max_repetitions=12)


def test_more_runs_stop_at_max_repetitions_and_the_first_trial_needs_none() -> None:
    goal = Objective(metric="tg")
    close = m(0, 101.0, tg_sd=4.0, n=12)
    assert not needs_more(close, m(0, 100.0, tg_sd=4.0, n=4), goal, max_repetitions=12)
    assert not needs_more(close, None, goal, max_repetitions=24)


def test_closeness_is_judged_on_the_objectives_score() -> None:
    # Equal generation speeds, prompt speeds far apart: close for tg, apart for pp.
    best, candidate = m(1000.0, 50.0, pp_sd=5.0, tg_sd=5.0), m(2000.0, 50.0, pp_sd=5.0, tg_sd=5.0)
    assert needs_more(candidate, best, Objective(metric="tg"), max_repetitions=12)
    assert not needs_more(candidate, best, Objective(metric="pp"), max_repetitions=12)


# -- the Pareto front -------------------------------------------------------------------------


def test_the_front_holds_every_trial_no_other_beats_at_both_speeds() -> None:
    points = [(100.0, 10.0), (80.0, 12.0), (70.0, 9.0), (120.0, 8.0), (80.0, 12.0)]
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([]) == []


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12))
def test_the_front_is_exactly_the_undominated_points(points: list[tuple[int, int]]) -> None:
    """Against the definition, checked pair by pair."""
    floats = [(float(a), float(b)) for a, b in points]
    expected = [
        i for i, p in enumerate(floats)
        if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in floats)
    ]  # fmt: skip
    assert pareto_front(floats) == expected
