"""Hook implementations of the built-in plugin."""

from __future__ import annotations

from ..hookspecs import hookimpl
from . import attacks, defenses, detectors, metrics, priors


@hookimpl
def register_attacks(register):
    register(attacks.DLG)
    register(attacks.IDLG)
    register(attacks.InvertingGradients)


@hookimpl
def register_priors(register):
    register(priors.TotalVariation)


@hookimpl
def register_metrics(register):
    register(metrics.LabelAccuracy)


@hookimpl
def register_defenses(register):
    register(defenses.NoDefense)
    register(defenses.DPGaussian)
    register(defenses.Prune)


@hookimpl
def register_detectors(register):
    for cls in detectors.DETECTORS:
        register(cls)
