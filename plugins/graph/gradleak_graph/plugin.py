"""Hook implementations of gradleak-graph: the ``graph`` modality, GRAIN's cases, attacks and metrics.

Each module keeps the list of what it contributes: ``cases.CASES``, ``grain.ATTACKS`` (GRAIN),
``dlg.ATTACKS`` (the graph-DLG baseline), ``metrics.METRICS``.
"""

from __future__ import annotations

from gradleak import hookimpl

from . import cases, grain, metrics
from .modality import Graph


@hookimpl
def register_modalities(register):
    register(Graph)


@hookimpl
def register_cases(register):
    for cls in cases.CASES:
        register(cls)


@hookimpl
def register_attacks(register):
    from . import dlg

    for cls in (*grain.ATTACKS, *dlg.ATTACKS):
        register(cls)


@hookimpl
def register_metrics(register):
    for cls in metrics.METRICS:
        register(cls)
