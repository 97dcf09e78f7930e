"""Generic metrics."""

from __future__ import annotations

import torch

from ..components import Metric
from ..types import Batch


class LabelAccuracy(Metric):
    """Fraction of samples whose reconstructed label equals the true one (after matching)."""

    name = "label_acc"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        if recon.labels is None or truth.labels is None:
            raise ValueError("label_acc needs labels on both the reconstruction and the truth")
        r, t = recon.labels, truth.labels
        if r.dim() > 1:
            r = r.argmax(-1)
        if t.dim() > 1:
            t = t.argmax(-1)
        return (r.to(t.device) == t).float()
