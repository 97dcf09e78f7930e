"""Hook implementations of gradleak-snn: the ``spikes`` modality, spiking cases and their ANN twins,
``spike-dlg`` and the spike metrics. The core's generic attacks (dlg, idlg, inverting-gradients) apply to the
spiking cases through :meth:`gradleak_snn.modality.Spikes.search_space`."""

from __future__ import annotations

from gradleak import hookimpl, register_all

from . import attacks, cases, metrics
from .modality import Spikes


@hookimpl
def register_modalities(register):
    register(Spikes)


@hookimpl
def register_cases(register):
    register_all(register, cases.CASES)


@hookimpl
def register_attacks(register):
    register_all(register, attacks.ATTACKS)


@hookimpl
def register_metrics(register):
    register_all(register, metrics.METRICS)
