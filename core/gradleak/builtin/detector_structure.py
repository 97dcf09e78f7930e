"""Weight-structure detectors: statistically improbable structure in the model a client receives.

Carletti, Foggia, Mazzocca, Parrella, Vento, "On the Detectability of Active Gradient Inversion Attacks in
Federated Learning" (IEEE S&P 2026), first family: tests on each received layer before local training. Every
score is calibrated so that an honestly initialised layer scores about N(0, 1) or a small fraction, and
``threshold`` is a level an honest model exceeds with negligible probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..components import Detector
from ..config import param


def weight_matrices(model: nn.Module, min_rows: int = 4) -> list[tuple[str, torch.Tensor]]:
    """Every weight of a Linear or Conv layer as a matrix ``(out, fan_in)`` in float64, with at least ``min_rows``."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            w = module.weight.detach().double().flatten(1)
            if w.shape[0] >= min_rows and w.shape[1] >= 2:
                out.append((f"{name}.weight", w))
    return out


@dataclass(frozen=True)
class DuplicateRowsConfig:
    cosine: float = param(0.99, "two rows with |cosine| above this are duplicates")

    def validate(self, owner: str) -> None:
        from ..errors import ConfigError

        if not 0 < self.cosine < 1:
            raise ConfigError(f"{owner}: cosine must be in (0, 1), got {self.cosine}")


class DuplicateRows(Detector):
    """Duplicated rows: the largest fraction of a layer's units that share their weight vector with another unit.

    Imprint modules (Robbing the Fed, QBI) give many units one linear query and quantile-spaced biases; random
    initialisations put rows at |cosine| ~ 1/sqrt(fan_in), training never aligns many rows exactly. Score:
    max over layers of the fraction of non-zero rows having a row at |cosine| > ``cosine`` (0 to 1).
    """

    name = "duplicate-rows"
    threshold = 0.05
    Config = DuplicateRowsConfig
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    def score(self, model: nn.Module, reference: nn.Module | None = None, **_: object) -> float:
        worst = 0.0
        for _, w in weight_matrices(model):
            norms = w.norm(dim=1)
            w = w[norms > 0]
            if len(w) < 2:
                continue
            u = w / w.norm(dim=1, keepdim=True)
            cos = (u @ u.T).abs()
            cos.fill_diagonal_(0)
            worst = max(worst, float((cos.amax(1) > self.config.cosine).double().mean()))
        return worst


class TrapAsymmetry(Detector):
    """Trap-weight sign and scale asymmetry: a layer whose rows lean negative, consistently across rows.

    Curious-Abandon-Honesty trap weights pair each negative magnitude with a positive one scaled by s < 1,
    so every row sums below zero and mean|w-| / mean|w+| = 1/s in every row. For a row of i.i.d. symmetric
    weights, t_i = sum(w_i) / ||w_i|| is about N(0, 1) and r_i = log(mean|w-| / mean|w+|) about
    N(0, ~1/fan_in). Score: max over layers of max(|mean t| sqrt(rows), |mean r| / (sd r / sqrt(rows))), the
    t statistics of a common shift (about |N(0, 1)| on an honest layer).
    """

    name = "trap-asymmetry"
    threshold = 6.0
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    def score(self, model: nn.Module, reference: nn.Module | None = None, **_: object) -> float:
        worst = 0.0
        for _, w in weight_matrices(model, min_rows=8):
            w = w[(w > 0).any(1) & (w < 0).any(1)]
            rows = len(w)
            if rows < 8:
                continue
            t = w.sum(1) / w.norm(dim=1)
            pos = torch.where(w > 0, w, torch.zeros_like(w)).sum(1) / (w > 0).sum(1)
            neg = torch.where(w < 0, -w, torch.zeros_like(w)).sum(1) / (w < 0).sum(1)
            r = torch.log(neg / pos)
            shift = float(t.mean().abs()) * math.sqrt(rows)
            ratio = float(r.mean().abs() / (r.std().clamp_min(1e-12) / math.sqrt(rows)))
            worst = max(worst, shift, ratio)
        return worst


class WeightOutliers(Detector):
    """Norm and distribution outliers against initialization statistics.

    ``reference`` is a model of the architecture the client expects, freshly initialised (or the last model
    it trusted). Per parameter tensor: the two-sample Kolmogorov-Smirnov test of the received values against
    the reference's (at most ``KS_SAMPLE`` values of each, evenly strided), scored as -log10(p) after a
    Bonferroni correction over tensors, and the norm ratio, scored as |ln(||w|| / ||w_ref||)| sqrt(n) (about
    |N(0, 1)| for two i.i.d. Gaussian tensors of n entries, less for uniform ones). A parameter the reference
    lacks, or of another shape, is a change of architecture and scores 100. Without a reference, each tensor
    is tested for symmetry (w against -w). Score: the maximum.
    """

    name = "weight-outliers"
    threshold = 6.0
    KS_SAMPLE = 20_000
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    def score(self, model: nn.Module, reference: nn.Module | None = None, **_: object) -> float:
        from scipy.stats import ks_2samp

        received = {n: p.detach().double().flatten().cpu() for n, p in model.named_parameters()}
        expected = ({n: p.detach().double().flatten().cpu() for n, p in reference.named_parameters()}
                    if reference is not None else None)
        tests = len(received)
        worst = 0.0
        for name, w in received.items():
            if expected is not None and (name not in expected or expected[name].shape != w.shape):
                return 100.0
            ref = expected[name] if expected is not None else -w
            if len(w) >= 8:
                step_w, step_r = max(1, len(w) // self.KS_SAMPLE), max(1, len(ref) // self.KS_SAMPLE)
                p = float(ks_2samp(w[::step_w].numpy(), ref[::step_r].numpy()).pvalue)
                worst = max(worst, -math.log10(max(min(1.0, p * tests), 1e-300)))
            if expected is not None:
                a, b = float(w.norm()), float(ref.norm())
                if a == 0 or b == 0:
                    worst = max(worst, 0.0 if a == b else 100.0)
                else:
                    worst = max(worst, abs(math.log(a / b)) * math.sqrt(len(w)))
        return min(worst, 300.0)
