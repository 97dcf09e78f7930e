"""Hook implementations of gradleak-rl: federated RL cases, RGIA and its baseline.

``cases.CASES`` (DQN and DDPG clients on Gymnasium classic control and highway-env), ``attacks.ATTACKS``
(``rl-dlg``, ``rgia``), ``priors.PRIORS`` (RGIA's state, reward and dynamics priors), ``metrics.METRICS``.
"""

from __future__ import annotations

from gradleak import hookimpl

from . import attacks, cases, metrics, priors
from .modality import Transition


@hookimpl
def register_modalities(register):
    register(Transition)


@hookimpl
def register_cases(register):
    for cls in cases.CASES:
        register(cls)


@hookimpl
def register_attacks(register):
    for cls in attacks.ATTACKS:
        register(cls)


@hookimpl
def register_priors(register):
    for cls in priors.PRIORS:
        register(cls)


@hookimpl
def register_metrics(register):
    for cls in metrics.METRICS:
        register(cls)
