"""Hook implementations of gradleak-snn: the ``spikes`` modality, spiking cases and their ANN twins,
``spike-dlg`` and the spike metrics. The core's generic attacks (dlg, idlg, inverting-gradients) apply to the
spiking cases through :meth:`gradleak_snn.modality.Spikes.search_space`."""

from __future__ import annotations

from gradleak import hookimpl

from . import attacks, cases, metrics
from .modality import Spikes


@hookimpl
def register_modalities(register):
    register(Spikes)


@hookimpl
def register_cases(register):
    for cls in cases.CASES:
        register(cls)


@hookimpl
def register_attacks(register):
    for cls in attacks.ATTACKS:
        register(cls)


@hookimpl
def register_metrics(register):
    for cls in metrics.METRICS:
        register(cls)
