"""Hook implementations of gradleak-vision.

Each module keeps the list of what it contributes, so adding an attack is one line in its own module:
``cases.CASES`` and ``mlp.CASES`` (cases), ``optimization`` (passive optimization attacks and their
priors), ``analytic`` (exact attacks), ``active`` (malicious-server attacks), ``metrics.METRICS``.
"""

from __future__ import annotations

from gradleak import hookimpl, register_all

from . import active, analytic, cases, metrics, mlp, optimization
from .modality import Image


@hookimpl
def register_modalities(register):
    register(Image)


@hookimpl
def register_cases(register):
    register_all(register, cases.CASES, mlp.CASES)


@hookimpl
def register_attacks(register):
    register_all(register, optimization.ATTACKS, analytic.ATTACKS, active.ATTACKS)


@hookimpl
def register_priors(register):
    register_all(register, optimization.PRIORS)


@hookimpl
def register_metrics(register):
    register_all(register, metrics.METRICS)
