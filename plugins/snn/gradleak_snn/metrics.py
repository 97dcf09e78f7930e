"""Metrics of the ``spikes`` modality: image metrics on the decoded input, and two metrics on the frames.

Every metric takes matched batches of :class:`~gradleak_snn.modality.SpikeTrain` and returns float32 ``(N,)``.
The image metrics reuse the vision plugin's formulas (:mod:`gradleak_vision.metrics`) on the images decoded
by :func:`gradleak_snn.encoding.decode_image`, so a spike PSNR and an image PSNR mean the same thing.
"""

from __future__ import annotations

import torch

from gradleak import Batch, Metric
from gradleak_vision.metrics import mse, psnr_from_mse, ssim

from .encoding import decode_image

SPIKES = frozenset({"spikes"})
#: A relaxed or reconstructed frame value counts as a spike from this value on.
SPIKE_THRESHOLD = 0.5


def _frames(recon: Batch, truth: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Both spike tensors as float64 ``(N, T, ...)`` on the truth's device, clipped to ``[0, 1]``."""
    t = truth.data.spikes.detach()
    r = recon.data.spikes.detach().to(t.device)
    if r.shape != t.shape:
        raise ValueError(f"cannot compare reconstructed spike trains of shape {tuple(r.shape)} with true ones of "
                         f"shape {tuple(t.shape)}")
    r, t = r.double(), t.double()
    if bool(torch.isnan(r).any()) or bool(torch.isnan(t).any()):
        raise ValueError("spike trains holding NaN values cannot be scored")
    return r.clamp(0, 1), t.clamp(0, 1)


def _images(recon: Batch, truth: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    r, t = _frames(recon, truth)
    return decode_image(r, recon.data.encoding), decode_image(t, truth.data.encoding)


class SpikeMSE(Metric):
    """Mean squared error of the decoded input images on [0, 1] (lower is better)."""

    name = "mse"
    modalities = SPIKES
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return mse(*_images(recon, truth)).float()


class SpikePSNR(Metric):
    """PSNR of the decoded input images, 10 log10(1 / MSE) dB (data range 1, capped at 100 dB)."""

    name = "psnr"
    modalities = SPIKES
    paper = "standard; data range 1, on the decoded input"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return psnr_from_mse(mse(*_images(recon, truth))).float()


class SpikeSSIM(Metric):
    """SSIM of the decoded input images (Wang et al., TIP 2004; Gaussian window 11, sigma 1.5, data range 1)."""

    name = "ssim"
    modalities = SPIKES
    paper = "Wang et al., Image quality assessment: from error visibility to structural similarity, TIP 2004"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return ssim(*_images(recon, truth)).float()


class TemporalConsistency(Metric):
    """Mean over time steps of the cosine similarity between reconstructed and true frames, in [0, 1].

    Aksu et al. (Privacy in FL with SNNs) report SNN reconstructions as "temporally inconsistent" without a
    formula; we score each step's frame against the true frame of the same step, so content put at the wrong
    time counts against it even when the time mean is right. A step where both frames are empty scores 1,
    one empty frame against a non-empty one scores 0.
    """

    name = "temporal_consistency"
    modalities = SPIKES
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025 (formula ours)"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _frames(recon, truth)
        r, t = r.flatten(2), t.flatten(2)
        nr, nt = r.norm(dim=2), t.norm(dim=2)
        cos = (r * t).sum(2) / (nr * nt).clamp_min(1e-12)
        both_empty = (nr == 0) & (nt == 0)
        return torch.where(both_empty, torch.ones_like(cos), cos).mean(1).float()


class SpikeF1(Metric):
    """F1 score of the reconstructed spikes (frame values >= 0.5) against the true ones, per sample.

    F1 = 2 TP / (2 TP + FP + FN) over every (step, channel, pixel); 1 when neither train has a spike. For direct
    encoding the "spikes" are the pixels of current >= 0.5.
    """

    name = "spike_f1"
    modalities = SPIKES

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _frames(recon, truth)
        r, t = (r >= SPIKE_THRESHOLD).flatten(1), (t >= SPIKE_THRESHOLD).flatten(1)
        tp = (r & t).sum(1).double()
        wrong = (r ^ t).sum(1).double()
        return torch.where(tp + wrong == 0, torch.ones_like(tp), 2 * tp / (2 * tp + wrong).clamp_min(1)).float()


#: The metrics this module registers.
METRICS = [SpikeMSE, SpikePSNR, SpikeSSIM, TemporalConsistency, SpikeF1]
