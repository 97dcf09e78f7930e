"""Hook implementations of gradleak-rl: federated RL cases, RGIA and its baseline.

``cases.CASES`` (DQN and DDPG clients on Gymnasium classic control and highway-env), ``attacks.ATTACKS``
(``rl-dlg``, ``rgia``), ``priors.PRIORS`` (RGIA's state, reward and dynamics priors), ``metrics.METRICS``.
"""

from __future__ import annotations

from gradleak import hookimpl, register_all

from . import attacks, cases, metrics, priors
from .modality import Transition


@hookimpl
def register_modalities(register):
    register(Transition)


@hookimpl
def register_cases(register):
    register_all(register, cases.CASES)


@hookimpl
def register_attacks(register):
    register_all(register, attacks.ATTACKS)


@hookimpl
def register_priors(register):
    register_all(register, priors.PRIORS)


@hookimpl
def register_metrics(register):
    register_all(register, metrics.METRICS)
