"""Hook implementations of the built-in plugin."""

from __future__ import annotations

from ..hookspecs import hookimpl
from . import attacks, censor, defenses, detectors, encryption, metrics, priors, quantize, soteria


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
    register(quantize.Quantize)
    register(soteria.Soteria)
    register(censor.Censor)
    register(encryption.SelectiveEncryption)


@hookimpl
def register_detectors(register):
    for cls in detectors.DETECTORS:
        register(cls)
