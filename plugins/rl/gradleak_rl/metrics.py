"""Scores of RL reconstructions (samples already matched): state, action, reward and dynamics errors.

``dynamics_err`` asks a referee the attack never consulted what the environment does from the reconstructed
``(s, a)``: the real Gymnasium simulator set to state ``s`` (classic control), or, for environments without
a settable closed form (highway-env), a dynamics model fitted on rollouts of a different seed than the
attacker's (:data:`gradleak_rl.learned.REFEREE_SEED`).
"""

from __future__ import annotations

import torch

from gradleak import Batch, Metric

from . import learned
from .dynamics import simulate
from .envs import env_info, make_env
from .modality import VALID_TOL
from .transitions import Transitions

TRANSITION = frozenset({"transition"})
#: A continuous action counts as correct within this share of the action range.
ACTION_TOL = 0.05


class StateMSE(Metric):
    """Mean squared error of the reconstructed states ``s`` (observation units)."""

    name = "state_mse"
    modalities = TRANSITION
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return (recon.data.s.double() - truth.data.s.double()).square().mean(-1)


class NextStateMSE(Metric):
    """Mean squared error of the reconstructed next states ``s'``."""

    name = "next_state_mse"
    modalities = TRANSITION
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return (recon.data.s2.double() - truth.data.s2.double()).square().mean(-1)


class ActionAcc(Metric):
    """Share of correct actions: the same id (discrete) or within 5% of the action range (continuous)."""

    name = "action_acc"
    modalities = TRANSITION

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = recon.data, truth.data
        if t.layout.discrete:
            return (r.action_ids == t.action_ids).double()
        info = env_info(t.env)
        tol = ACTION_TOL * (info.action_high - info.action_low)
        return ((r.a.double() - t.a.double()).abs() <= tol).all(-1).double()


class ActionMSE(Metric):
    """Mean squared error of the actions (one-hot vectors for discrete actions, values for continuous)."""

    name = "action_mse"
    modalities = TRANSITION
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return (recon.data.a.double() - truth.data.a.double()).square().mean(-1)


class RewardMAE(Metric):
    """Absolute error of the reconstructed rewards."""

    name = "reward_mae"
    modalities = TRANSITION
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return (recon.data.r.double() - truth.data.r.double()).abs()


def valid_tolerance(env: str) -> float:
    """:data:`VALID_TOL`, or a learned referee's own held-out error (90th percentile) where that is larger."""
    info = env_info(env)
    if info.family != "learned":
        return VALID_TOL
    model = learned.dynamics_model(env, info.family, learned.REFEREE_SEED, info.obs_low, info.obs_high)
    return max(VALID_TOL, model.tolerance)


def dynamics_error(recon: Transitions) -> torch.Tensor:
    """``sqrt(mean_j ((s'_j - f_j(s, a)) / scale_j)^2)`` per transition, with the referee's ``f`` and state scale."""
    info = env_info(recon.env)
    stats = learned.state_stats(recon.env, info.family, learned.REFEREE_SEED, info.obs_low, info.obs_high)
    s, a, s2 = recon.s.detach().cpu().double(), recon.a.detach().cpu().double(), recon.s2.detach().cpu().double()
    if info.family != "learned":
        env = make_env(recon.env, recon.env_kwargs)
        ref, _ = simulate(env, info.family, s.numpy(), a.numpy(), info.layout.discrete)
        env.close()
        ref = torch.as_tensor(ref)
    else:
        model = learned.dynamics_model(recon.env, info.family, learned.REFEREE_SEED, info.obs_low, info.obs_high)
        with torch.no_grad():
            ref = model(s.float(), a.float())[0].double()
    return ((s2 - ref) / stats.scale).square().mean(-1).sqrt()


class DynamicsErr(Metric):
    """RMS over state dimensions of ``(s' - f(s, a)) / scale``: distance of the reconstructed ``s'`` from what the
    environment does from the reconstructed ``(s, a)``, in units of the state's typical spread."""

    name = "dynamics_err"
    modalities = TRANSITION
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return dynamics_error(recon.data).to(truth.data.s.device)


class ValidFrac(Metric):
    """1 when a reconstructed transition is dynamically valid, else 0; its mean is the share of valid transitions.

    Valid: ``dynamics_err <= 0.1`` against the simulator (classic control); against a learned referee
    (highway-env), within the larger of 0.1 and the referee's own 90th-percentile error on held-out real
    transitions, since real transitions do not meet a learned model exactly."""

    name = "valid_frac"
    modalities = TRANSITION

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        tol = valid_tolerance(recon.data.env)
        return (dynamics_error(recon.data) <= tol).double().to(truth.data.s.device)


METRICS = [StateMSE, NextStateMSE, ActionAcc, ActionMSE, RewardMAE, DynamicsErr, ValidFrac]
