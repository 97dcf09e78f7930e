"""Hook implementations of gradleak-vision.

Each module keeps the list of what it contributes, so adding an attack is one line in its own module:
``cases.CASES`` and ``mlp.CASES`` (cases), ``optimization`` (passive optimization attacks and their
priors), ``analytic`` (exact attacks), ``active`` (malicious-server attacks), ``metrics.METRICS``.
"""

from __future__ import annotations

from gradleak import hookimpl

from . import active, analytic, cases, metrics, mlp, optimization
from .modality import Image


@hookimpl
def register_modalities(register):
    register(Image)


@hookimpl
def register_cases(register):
    for cls in (*cases.CASES, *mlp.CASES):
        register(cls)


@hookimpl
def register_attacks(register):
    for cls in (*optimization.ATTACKS, *analytic.ATTACKS, *active.ATTACKS):
        register(cls)


@hookimpl
def register_priors(register):
    for cls in optimization.PRIORS:
        register(cls)


@hookimpl
def register_metrics(register):
    for cls in metrics.METRICS:
        register(cls)
