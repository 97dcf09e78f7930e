"""Test scheduling for ``make test``: two xdist workers taking whole files, heavy files first.

``--dist loadfile`` hands each worker whole test files, so a module's expensive fixture (a Flower federation:
minutes) is built once. A test marked ``heavy(minutes)`` takes minutes of CPU: collection puts those first,
the heaviest first, and ``--no-loadscope-reorder`` keeps that order (xdist would otherwise start with the
files that hold the most tests), so each worker starts on a heavy file and the many short ones fill in
behind. Without it the heavy files started last and one worker ran them alone at the end: 17 min of wall
time for 21 min of CPU. (``--dist loadgroup`` cannot group tests here: with pytest 9.2, xdist 3.8's group
suffix on ``item._nodeid`` no longer changes ``item.nodeid``.)
"""

from __future__ import annotations

import pytest


def _minutes(item: pytest.Item) -> float:
    marker = item.get_closest_marker("heavy")
    return float(marker.args[0]) if marker and marker.args else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_minutes, reverse=True)  # stable: the file order stands among equals
