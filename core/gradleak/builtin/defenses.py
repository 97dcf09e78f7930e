"""Generic defenses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..components import ClientContext, Defense
from ..config import param, require_positive
from ..errors import ConfigError
from ..types import Update
from .utility import training_cost


class UpdateDefense(Defense):
    """An update-stage defense whose utility cost is the client's loss/accuracy after a step (:mod:`.utility`)."""

    stage = "update"

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        return training_cost(clean, defended, context)


class NoDefense(UpdateDefense):
    """No defense: the update is sent as computed (the baseline of every comparison)."""

    name = "none"


def clip_update(tensors: dict[str, torch.Tensor], clip: float) -> dict[str, torch.Tensor]:
    """Scale all tensors together so that their joint L2 norm is at most ``clip`` (unchanged if already)."""
    norm = math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors.values()))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return {k: t * scale for k, t in tensors.items()}


@dataclass(frozen=True)
class DPGaussianConfig:
    clip: float = param(1.0, "L2 bound C: the whole update is scaled down to norm <= C before noise")
    sigma: float = param(0.01, "noise multiplier z: every coordinate gets N(0, (z*C)^2) noise (0: clip only)")
    delta: float = param(1e-5, "delta of the reported (epsilon, delta) guarantee, 0 < delta < 1")
    rounds: int = param(1, "rounds the client takes part in, composed into the reported epsilon")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "clip", "sigma", allow_zero=("sigma",))
        if not 0 < self.delta < 1:
            raise ConfigError(f"{owner}: delta must be in (0, 1), got {self.delta}")
        if self.rounds < 1:
            raise ConfigError(f"{owner}: rounds must be >= 1, got {self.rounds}")


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gaussian_epsilon(noise_multiplier: float, delta: float, rounds: int = 1) -> float:
    """The smallest epsilon for which ``rounds`` releases of the Gaussian mechanism are (epsilon, delta)-DP.

    Exact, not a bound: the analytic Gaussian mechanism (Balle & Wang, ICML 2018, Theorem 8) says that noise
    of std ``z * Delta`` on an L2-sensitivity-``Delta`` query is (eps, delta)-DP iff
    ``Phi(1/(2z) - eps*z) - e^eps * Phi(-1/(2z) - eps*z) <= delta``; ``rounds`` adaptive releases compose
    exactly into one with ``z / sqrt(rounds)`` (Gaussian DP, Dong, Roth, Su 2022, Corollary 2). Solved for eps
    by bisection. No amplification by client sampling is assumed (every round releases this client).
    """
    z = noise_multiplier / math.sqrt(rounds)

    def delta_at(eps: float) -> float:
        a = 1.0 / (2.0 * z)
        lower = _phi(-a - eps * z)
        # e^eps * Phi(-a - eps z) in log space: e^eps alone overflows long before the product does.
        return _phi(a - eps * z) - (math.exp(eps + math.log(lower)) if lower > 0 else 0.0)

    if delta_at(0.0) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while delta_at(hi) > delta:
        lo, hi = hi, hi * 2.0
        if hi > 1e8:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if delta_at(mid) > delta else (lo, mid)
    return hi


class DPGaussian(UpdateDefense):
    """Gaussian mechanism on the client update: clip the whole update to L2 norm ``clip``, add N(0, (sigma*clip)^2).

    Client-level DP as in DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
    Models") with the clip-then-noise Gaussian mechanism of DP-SGD (Abadi et al. 2016). ``sigma`` is the noise
    multiplier z (the noise std is ``sigma * clip``); converting (z, rounds, sampling rate) to (epsilon, delta)
    needs an accountant and is not done here. The clip is over all tensors jointly (flat clipping), and one
    round's update is one release. Per-example DP-SGD (clipping each sample's gradient at every local step,
    stage ``"train"``) is a separate defense and comes with the defenses issue.
    """

    name = "dp-gaussian"
    stage = "update"
    Config = DPGaussianConfig
    paper = "Abadi et al. 2016 (DP-SGD); McMahan et al. 2018 (DP-FedAvg)"

    def apply_update(self, update: Update, generator: torch.Generator, context: ClientContext | None = None) -> Update:
        cfg = self.config
        clipped = clip_update(dict(update.tensors), cfg.clip)
        if cfg.sigma == 0:
            return update.with_tensors(clipped)
        std = cfg.sigma * cfg.clip
        noisy = {}
        for k, t in clipped.items():
            noise = torch.randn(t.shape, generator=generator, device=generator.device, dtype=t.dtype)
            noisy[k] = t + std * noise.to(t.device)
        return update.with_tensors(noisy)

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        cost = super().utility_cost(clean, defended, context)
        if self.config.sigma > 0:
            cost["epsilon"] = gaussian_epsilon(self.config.sigma, self.config.delta, self.config.rounds)
            cost["delta"] = self.config.delta
        return cost


@dataclass(frozen=True)
class PruneConfig:
    ratio: float = param(0.9, "fraction of each tensor's entries set to zero, smallest magnitudes first (0 <= r < 1)")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "ratio", allow_zero=("ratio",))
        if not self.ratio < 1:
            raise ConfigError(f"{owner}: ratio must be < 1 (the fraction of entries pruned), got {self.ratio}")


class Prune(UpdateDefense):
    """Gradient pruning: zero the ``ratio`` fraction of smallest-magnitude entries of every tensor of the update.

    Zhu, Liu, Han 2019, "Deep Leakage from Gradients", Sec. 5 (defense strategies): gradients with small
    magnitudes are pruned to zero; the paper reports that the attack fails once more than about 20% of
    entries are pruned on its setup. Pruning is per tensor (each parameter's own magnitude threshold, as the
    DLG code does with a percentile per parameter), not one global threshold over the whole update. Exactly
    ``floor(ratio * numel)`` entries of each tensor are zeroed (ties at the threshold broken arbitrarily);
    the kept entries are sent unchanged.
    """

    name = "prune"
    stage = "update"
    Config = PruneConfig
    paper = "Zhu, Liu, Han 2019 (Deep Leakage from Gradients), Sec. 5"

    def apply_update(self, update: Update, generator: torch.Generator, context: ClientContext | None = None) -> Update:
        return update.with_tensors({k: self._prune(t) for k, t in update.tensors.items()})

    def _prune(self, t: torch.Tensor) -> torch.Tensor:
        n = t.numel()
        k = int(math.floor(self.config.ratio * n + 1e-9))
        if k == 0:
            return t
        flat = t.reshape(-1)
        drop = torch.topk(flat.abs(), k, largest=False, sorted=False).indices
        out = flat.clone()
        out[drop] = 0
        return out.reshape(t.shape)
