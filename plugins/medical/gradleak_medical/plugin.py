"""Hook implementations of gradleak-medical: biomedical patch cases, the latent-perturbation defense, DP-SGD."""

from __future__ import annotations

from gradleak import hookimpl, register_all

from .cases import CASES
from .dpsgd import DPSGD
from .latent import LatentPerturbation
from .metrics import METRICS


@hookimpl
def register_cases(register):
    register_all(register, CASES)


@hookimpl
def register_defenses(register):
    register_all(register, (LatentPerturbation, DPSGD))


@hookimpl
def register_metrics(register):
    register_all(register, METRICS)
