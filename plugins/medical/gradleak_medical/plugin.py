"""Hook implementations of gradleak-medical: biomedical patch cases, the latent-perturbation defense, DP-SGD."""

from __future__ import annotations

from gradleak import hookimpl

from .cases import CASES
from .dpsgd import DPSGD
from .latent import LatentPerturbation
from .metrics import METRICS


@hookimpl
def register_cases(register):
    for cls in CASES:
        register(cls)


@hookimpl
def register_defenses(register):
    register(LatentPerturbation)
    register(DPSGD)


@hookimpl
def register_metrics(register):
    for cls in METRICS:
        register(cls)
