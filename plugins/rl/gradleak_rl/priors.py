"""RGIA's three priors (He 2025) on packed candidate transitions ``(R, B, size)``, each usable alone.

Every penalty is a mean over the batch in normalised units (states divided by the attacker's per-dimension
state scale, rewards by the reward scale), so one weight means the same on every environment. What the
attacker knows comes from the public environment: its observation space, its closed-form dynamics and reward
(classic control) or models fitted on the attacker's own rollouts (:mod:`gradleak_rl.learned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from gradleak import AttackerView, Prior
from gradleak.config import param, require_positive

from . import dynamics, learned
from .envs import EnvInfo, env_info
from .learned import ATTACKER_SEED, StateStats

TRANSITION = frozenset({"transition"})


def attacker_knowledge(env_id: str, device: torch.device, dtype: torch.dtype) -> tuple[EnvInfo, StateStats]:
    """The environment's description and the attacker's state statistics (from its own rollouts)."""
    info = env_info(env_id)
    stats = learned.state_stats(env_id, info.family, ATTACKER_SEED, info.obs_low, info.obs_high)
    return info, stats.to(device, dtype)


def _unpack(inputs: torch.Tensor, view: AttackerView):
    info, stats = attacker_knowledge(view.model.env_id, inputs.device, inputs.dtype)
    return info, stats, info.layout.split(inputs)


def next_state(info: EnvInfo, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacker's ``f(s, a)``: ``(s', done)`` from the closed-form dynamics or its learned model."""
    if info.family != "learned":
        s2, _, term = dynamics.step(info.family, s, a)
        return s2, term.to(s.dtype)
    model = learned.dynamics_model(info.env_id, info.family, ATTACKER_SEED, info.obs_low, info.obs_high)
    model = model.to(s.device)
    s2, done = model(s.float(), a.float())
    return s2.to(s.dtype), done.to(s.dtype)


def reward(info: EnvInfo, s: torch.Tensor, a: torch.Tensor, stats: StateStats) -> torch.Tensor:
    """The attacker's ``r(s, a)``: the closed-form reward or its learned reward model."""
    if info.family != "learned":
        return dynamics.step(info.family, s, a)[1]
    model = learned.reward_model(info.env_id, info.family, ATTACKER_SEED, info.obs_low, info.obs_high).to(s.device)
    return (stats.r_mean + stats.r_scale * model(s.float(), a.float()).squeeze(-1)).to(s.dtype)


@dataclass(frozen=True)
class StatePriorConfig:
    bounds: float = param(100.0, "weight of the observation-space box term relative to the density term")
    density: Literal["kde", "gaussian"] = param("kde", "density fitted on attacker rollouts")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "bounds", allow_zero=("bounds",))


class StatePrior(Prior):
    """RGIA's state prior: observation-space bounds plus the NLL of a density fitted on attacker rollouts.

    He, "Gradient Inversion in Federated Reinforcement Learning", arXiv 2512.00303, 2025.
    R_s = bounds * mean ||relu(low - s) / scale||^2 + ||relu(s - high) / scale||^2 + mean NLL(z) / ds,
    z = (s - mu) / scale, for s and s'. The paper names state priors without fixing their form; we take the box
    of ``observation_space`` (the rollouts' range, padded 10%, where it is infinite) and, by default, a Gaussian
    kernel density on 2,000 rollout states (Scott's bandwidth), which follows curved observation manifolds
    such as (cos, sin) pairs; ``density=gaussian`` is a full-covariance Gaussian instead.
    """

    name = "state-prior"
    modalities = TRANSITION
    Config = StatePriorConfig
    paper = "He, Gradient Inversion in Federated Reinforcement Learning, arXiv 2025"

    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor:
        _, stats, (s, _, _, s2, _) = _unpack(inputs, view)
        states = torch.cat([s, s2], dim=-2)
        box = (torch.relu(stats.low - states) + torch.relu(states - stats.high)) / stats.scale
        z = (states - stats.mean) / stats.scale
        if self.config.density == "gaussian":
            nll = 0.5 * torch.einsum("...i,ij,...j->...", z, stats.precision, z) / z.shape[-1]
        else:
            d2 = (z.unsqueeze(-2) - stats.points).square().sum(-1) / (2 * stats.bandwidth**2)
            nll = -torch.logsumexp(-d2, dim=-1) / z.shape[-1]
        return self.config.bounds * box.square().mean((-1, -2)) + nll.mean(-1)


class RewardPrior(Prior):
    """RGIA's reward prior: consistency with the known reward function (or a learned reward model).

    He 2025. R_r = mean ((r - r(s, a)) / r_scale)^2, with Gymnasium's closed-form reward for classic control
    and an MLP fitted on attacker rollouts where the reward is not closed-form (highway-env).
    """

    name = "reward-prior"
    modalities = TRANSITION
    paper = "He, Gradient Inversion in Federated Reinforcement Learning, arXiv 2025"

    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor:
        info, stats, (s, a, r, _, _) = _unpack(inputs, view)
        return ((r - reward(info, s, a, stats)) / stats.r_scale).square().mean(-1)


class DynamicsPrior(Prior):
    """RGIA's dynamics prior: ``s'`` (and ``done``) consistent with the environment's transition function.

    He 2025. R_T = mean ||(s' - f(s, a)) / scale||^2 / ds + (done - term(f(s, a)))^2, with ``f`` the closed-form
    classic-control dynamics in torch (:mod:`gradleak_rl.dynamics`) or an MLP fitted on attacker rollouts
    (highway-env). Relaxed discrete actions enter ``f`` as their expected force.
    """

    name = "dynamics-prior"
    modalities = TRANSITION
    paper = "He, Gradient Inversion in Federated Reinforcement Learning, arXiv 2025"

    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor:
        info, stats, (s, a, _, s2, done) = _unpack(inputs, view)
        f, term = next_state(info, s, a)
        err = ((s2 - f) / stats.scale).square().mean(-1)
        return (err + (done - term.detach()).square()).mean(-1)


PRIORS = [StatePrior, RewardPrior, DynamicsPrior]
