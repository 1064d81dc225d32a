"""The Pareto front of prompt processing against generation speed.

A trial is on the front when no other trial is at least as fast at both and faster at
one: the front holds every sensible choice, whatever weight a user gives the two.

>>> pareto_front([(100.0, 10.0), (80.0, 12.0), (70.0, 9.0), (100.0, 10.0)])
[0, 1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """The indexes of the points no other point dominates (both coordinates maximised),
    in their order; equal points are all on the front (neither beats the other)."""
    # Sorted by the first coordinate, descending (then the second): every point before
    # one is at least as good at the first, so it is dominated exactly when an earlier
    # point has a higher second, or the same second with a higher first. One pass.
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front: list[int] = []
    best_first, best_second = float("-inf"), float("-inf")
    for index in order:
        first, second = points[index]
        if second > best_second:
            front.append(index)
            best_first, best_second = first, second
        elif second == best_second and first == best_first:
            front.append(index)  # equal to a point on the front: neither beats the other
    return sorted(front)
