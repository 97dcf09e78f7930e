"""What an attacker (or the metrics' referee) learns from its own rollouts of the public environment.

- :func:`state_stats`: per-dimension mean, scale and bounds of observations, and a Gaussian density
  (full covariance, ridge 1e-3) for the state prior.
- :func:`dynamics_model`: an MLP ``(s, a) -> (s' - s, done logit)`` for environments without closed-form
  dynamics (highway-env), as the RGIA formulation suggests for driving tasks.
- :func:`reward_model`: an MLP ``(s, a) -> r`` where the reward is not closed-form.

Everything is fitted on rollouts drawn with a given seed and cached per process, so the attack's models
(seed :data:`ATTACKER_SEED`) and the metric's referee (seed :data:`REFEREE_SEED`) never share a transition.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
from torch import nn

from .envs import attacker_rollouts
from .transitions import Transitions

log = logging.getLogger(__name__)

ATTACKER_SEED = 1000
REFEREE_SEED = 2000
#: Transitions per rollout set: classic control is cheap; highway-env costs 10-70 ms a step.
ROLLOUT_STEPS = {"classic": 4000, "learned": 1500}
FIT_STEPS = 1500
HELD_OUT = 0.1
KDE_POINTS = 2000


@dataclass(frozen=True)
class StateStats:
    """Observation statistics: ``mean``, ``scale`` (std, floored), box ``low``/``high`` and the Gaussian's
    precision matrix ``precision`` (inverse covariance)."""

    mean: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    precision: torch.Tensor
    r_mean: float
    r_scale: float
    #: Normalised rollout states ``(K, ds)`` (at most :data:`KDE_POINTS`) and the kernel bandwidth (Scott's rule).
    points: torch.Tensor
    bandwidth: float

    def to(self, device: torch.device, dtype: torch.dtype) -> StateStats:
        conv = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return StateStats(conv(self.mean), conv(self.scale), conv(self.low), conv(self.high), conv(self.precision),
                          self.r_mean, self.r_scale, conv(self.points), self.bandwidth)


def rollouts(env_id: str, family: str, seed: int) -> Transitions:
    steps = ROLLOUT_STEPS["learned" if family == "learned" else "classic"]
    return attacker_rollouts(env_id, steps, seed)


@functools.lru_cache(maxsize=16)
def state_stats(env_id: str, family: str, seed: int, obs_low: tuple, obs_high: tuple) -> StateStats:
    """Statistics of the rollouts' states; finite observation-space bounds win over the rollouts' range."""
    data = rollouts(env_id, family, seed)
    states = torch.cat([data.s, data.s2]).double()
    mean = states.mean(0)
    std = states.std(0)
    scale = std.clamp_min(max(float(std.max()) * 0.05, 1e-6))
    lo, hi = states.min(0).values, states.max(0).values
    pad = 0.1 * (hi - lo) + 1e-3
    low = torch.tensor(obs_low, dtype=torch.float64)
    high = torch.tensor(obs_high, dtype=torch.float64)
    low = torch.where(torch.isfinite(low), low, lo - pad)
    high = torch.where(torch.isfinite(high), high, hi + pad)
    cov = torch.cov(((states - mean) / scale).T) + 1e-3 * torch.eye(states.shape[1], dtype=torch.float64)
    r = data.r.double()
    keep = torch.randperm(len(states), generator=torch.Generator().manual_seed(seed))[:KDE_POINTS]
    points = ((states - mean) / scale)[keep]
    bandwidth = float(len(points)) ** (-1.0 / (states.shape[1] + 4))
    return StateStats(mean, scale, low, high, torch.linalg.inv(cov), float(r.mean()), max(float(r.std()), 1e-3),
                      points, bandwidth)


class _Net(nn.Module):
    """MLP on normalised ``(s, a)``: 2 x 128 ReLU."""

    def __init__(self, d_in: int, d_out: int, stats: StateStats, generator: torch.Generator) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, d_out))
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    b = m.in_features ** -0.5
                    m.weight.uniform_(-b, b, generator=generator)
                    m.bias.uniform_(-b, b, generator=generator)
        self.register_buffer("mean", stats.mean.float())
        self.register_buffer("scale", stats.scale.float())

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([(s - self.mean) / self.scale, a], -1))


def _fit(net: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor], loss_fn, generator: torch.Generator) -> None:
    """Adam, mini-batches of 256, :data:`FIT_STEPS` steps, lr 1e-3 with cosine decay."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, FIT_STEPS)
    n = len(inputs[0])
    for _ in range(FIT_STEPS):
        idx = torch.randint(0, n, (min(256, n),), generator=generator)
        opt.zero_grad()
        loss_fn(net, idx).backward()
        opt.step()
        sched.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)


class DynamicsModel(nn.Module):
    """``(s, a) -> (s', done probability)``, trained on normalised residuals ``(s' - s) / scale``.

    ``tolerance`` is the 90th percentile, over held-out real transitions (the last :data:`HELD_OUT` of the
    rollouts, not trained on), of ``sqrt(mean_j ((s'_j - f_j(s, a)) / scale_j)^2)``: how far the model itself is
    from real transitions, which a validity test against it must allow.
    """

    def __init__(self, net: _Net, tolerance: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.tolerance = tolerance

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(s, a)
        return s + self.net.scale.to(s.dtype) * out[..., :-1].to(s.dtype), torch.sigmoid(out[..., -1]).to(s.dtype)


@functools.lru_cache(maxsize=16)
def dynamics_model(env_id: str, family: str, seed: int, obs_low: tuple, obs_high: tuple) -> DynamicsModel:
    """A dynamics model fitted on the rollouts of ``seed`` (float32, CPU; move it where needed)."""
    data = rollouts(env_id, family, seed)
    stats = state_stats(env_id, family, seed, obs_low, obs_high)
    gen = torch.Generator().manual_seed(seed)
    net = _Net(data.layout.state_dim + data.layout.action_dim, data.layout.state_dim + 1, stats, gen)
    target = ((data.s2 - data.s) / stats.scale.float()).float()
    n_fit = len(data) - int(HELD_OUT * len(data))

    def loss(net: _Net, idx: torch.Tensor) -> torch.Tensor:
        out = net(data.s[idx].float(), data.a[idx].float())
        return ((out[:, :-1] - target[idx]).square().mean()
                + nn.functional.binary_cross_entropy_with_logits(out[:, -1], data.done[idx].float()))

    with torch.enable_grad():
        _fit(net, (data.s[:n_fit], data.a[:n_fit]), loss, gen)
    model = DynamicsModel(net)
    with torch.no_grad():
        pred = model(data.s[n_fit:].float(), data.a[n_fit:].float())[0]
        err = ((data.s2[n_fit:].float() - pred) / stats.scale.float()).square().mean(-1).sqrt()
    model.tolerance = float(torch.quantile(err, 0.9)) if len(err) else 0.0
    log.info("fitted a dynamics model for %s on %d transitions (seed %d), held-out q90 error %.3f",
             env_id, n_fit, seed, model.tolerance)
    return model


@functools.lru_cache(maxsize=16)
def reward_model(env_id: str, family: str, seed: int, obs_low: tuple, obs_high: tuple) -> _Net:
    """A reward model ``(s, a) -> (r - r_mean) / r_scale`` fitted on the rollouts of ``seed``."""
    data = rollouts(env_id, family, seed)
    stats = state_stats(env_id, family, seed, obs_low, obs_high)
    gen = torch.Generator().manual_seed(seed + 1)
    net = _Net(data.layout.state_dim + data.layout.action_dim, 1, stats, gen)
    target = ((data.r - stats.r_mean) / stats.r_scale).float()

    def loss(net: _Net, idx: torch.Tensor) -> torch.Tensor:
        return (net(data.s[idx].float(), data.a[idx].float()).squeeze(-1) - target[idx]).square().mean()

    with torch.enable_grad():
        _fit(net, (data.s, data.a), loss, gen)
    return net
