"""DP-SGD (Abadi et al. 2016): per-example gradient clipping and Gaussian noise at every local step.

    g~ = (1/N) * ( sum_i g_i * min(1, C / ||g_i||_2)  +  N(0, sigma^2 C^2 I) )

Each sample's gradient (all parameters together) is clipped to L2 norm ``clip``; the clipped gradients are
summed, Gaussian noise of standard deviation ``sigma * clip`` is added to the sum, and the result is divided
by the batch size, as in Abadi et al.'s Algorithm 1 (and Opacus). The privacy spent, epsilon at ``delta``, is
computed with Opacus's RDP accountant when Opacus is installed (``pip install "gradleak[dp]"``), for the
client's local steps at sampling rate ``batch / dataset`` as the client sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradleak import ClientContext, ConfigError, Defense, Update, param


@dataclass(frozen=True)
class DPSGDConfig:
    clip: float = param(1.0, "per-example L2 clipping bound C")
    sigma: float = param(1.0, "noise multiplier z: the sum of clipped gradients gets N(0, (z*C)^2) noise")
    delta: float = param(1e-5, "delta of the reported (epsilon, delta) guarantee")

    def validate(self, owner: str) -> None:
        if not self.clip > 0:
            raise ConfigError(f"{owner}: clip must be > 0, got {self.clip}")
        if not self.sigma >= 0:
            raise ConfigError(f"{owner}: sigma must be >= 0, got {self.sigma}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"{owner}: delta must be in (0, 1), got {self.delta}")


class DPSGD(Defense):
    """DP-SGD: clip every example's gradient to ``clip`` and add Gaussian noise (``sigma * clip``) at each step."""

    name = "dp-sgd"
    stage = "train"
    per_sample = True
    Config = DPSGDConfig
    paper = "Abadi et al., Deep Learning with Differential Privacy, CCS 2016"

    def __init__(self, config=None, device="cpu") -> None:
        super().__init__(config, device)
        self.steps = 0
        self.batch = 1

    def apply_step(self, grads: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        n = next(iter(grads.values())).shape[0]
        norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in grads.values()))
        scale = (c.clip / (norms + 1e-12)).clamp(max=1.0)
        out = {}
        for k, g in grads.items():
            total = (g * scale.view(n, *([1] * (g.dim() - 1)))).sum(0)
            noise = torch.randn(total.shape, generator=generator, device=generator.device, dtype=total.dtype)
            out[k] = (total + c.sigma * c.clip * noise.to(total.device)) / n
        self.steps += 1
        self.batch = n
        return out

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        cost = super().utility_cost(clean, defended, context)
        eps = self.epsilon(dataset_size=len(context.case.load_data(None)) if context is not None else None)
        if eps is not None:
            cost["epsilon"] = eps
        return cost

    def epsilon(self, dataset_size: int | None) -> float | None:
        """Epsilon spent by the steps taken so far (RDP accountant), or None without Opacus or data size."""
        if dataset_size is None or self.steps == 0:
            return None
        if self.config.sigma == 0:
            return math.inf
        try:
            from opacus.accountants import RDPAccountant
        except ImportError:
            return None
        acc = RDPAccountant()
        acc.history = [(self.config.sigma, min(1.0, self.batch / dataset_size), self.steps)]
        return float(acc.get_epsilon(delta=self.config.delta))
