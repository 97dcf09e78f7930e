"""Test scheduling: modules marked ``heavy(minutes)`` run first, the heaviest first.

``make test`` runs on two xdist workers that take whole files (``--dist loadfile``, so a module's expensive
fixture, such as a Flower federation, is built once). A file that takes minutes would otherwise start last
and leave one worker alone for its whole length; starting the heavy files first lets the many short ones
fill in behind them, and both workers end together.
"""

from __future__ import annotations

import pytest


def _minutes(item: pytest.Item) -> float:
    marker = item.get_closest_marker("heavy")
    return float(marker.args[0]) if marker and marker.args else 0.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_minutes, reverse=True)  # heaviest first; stable, so file order is kept otherwise
