"""Hook implementations of the built-in plugin."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..plugins import register_all
from . import attacks, censor, defenses, detectors, encryption, metrics, priors, quantize, soteria


@hookimpl
def register_attacks(register):
    register_all(register, (attacks.DLG, attacks.IDLG, attacks.InvertingGradients))


@hookimpl
def register_priors(register):
    register(priors.TotalVariation)


@hookimpl
def register_metrics(register):
    register(metrics.LabelAccuracy)


@hookimpl
def register_defenses(register):
    register_all(register, (defenses.NoDefense, defenses.DPGaussian, defenses.Prune, quantize.Quantize, soteria.Soteria,
                            censor.Censor, encryption.SelectiveEncryption))


@hookimpl
def register_detectors(register):
    register_all(register, detectors.DETECTORS)
