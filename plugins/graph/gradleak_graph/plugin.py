"""Hook implementations of gradleak-graph: the ``graph`` modality, GRAIN's cases, attacks and metrics.

Each module keeps the list of what it contributes: ``cases.CASES``, ``grain.ATTACKS`` (GRAIN),
``dlg.ATTACKS`` (the graph-DLG baseline), ``metrics.METRICS``.
"""

from __future__ import annotations

from gradleak import hookimpl, register_all

from . import cases, grain, metrics
from .modality import Graph


@hookimpl
def register_modalities(register):
    register(Graph)


@hookimpl
def register_cases(register):
    register_all(register, cases.CASES)


@hookimpl
def register_attacks(register):
    from . import dlg

    register_all(register, grain.ATTACKS, dlg.ATTACKS)


@hookimpl
def register_metrics(register):
    register_all(register, metrics.METRICS)
