"""Per-sample image metrics on ``[0, 1]`` data: MSE, PSNR and SSIM.

Every metric takes matched batches of images ``(N, C, H, W)`` and returns a float32 tensor ``(N,)``.
Both images are clipped to the data range ``[0, 1]`` first: an unboxed attack (DLG) may return values outside
it, and the saved ``recon.npy`` is clipped the same way, so re-scoring the saved files gives the same numbers.
Computation runs in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradleak import Batch, Metric

IMAGE = frozenset({"image"})

#: PSNR reported for a perfect (or numerically perfect, MSE <= 1e-10) reconstruction, instead of infinity.
PSNR_CAP_DB = 100.0


def _pair(recon: Batch, truth: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64 ``(N, C, H, W)`` on the truth's device, clipped to ``[0, 1]``."""
    t = torch.as_tensor(truth.data)
    r = torch.as_tensor(recon.data).to(t.device)
    if r.shape != t.shape:
        raise ValueError(f"cannot compare reconstructed images of shape {tuple(r.shape)} with true images of "
                         f"shape {tuple(t.shape)}")
    if t.dim() == 3:  # (N, H, W): one channel
        r, t = r.unsqueeze(1), t.unsqueeze(1)
    r, t = r.detach().double(), t.detach().double()
    if bool(torch.isnan(r).any()) or bool(torch.isnan(t).any()):
        raise ValueError("images holding NaN values cannot be scored")
    return r.clamp(0, 1), t.clamp(0, 1)


def mse(recon: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error of two ``(N, ...)`` tensors."""
    return (recon - truth).pow(2).flatten(1).mean(1)


def psnr_from_mse(err: torch.Tensor, cap: float = PSNR_CAP_DB) -> torch.Tensor:
    """``10 log10(1 / mse)`` (data range 1), at most ``cap`` dB; an MSE of 0 gives exactly ``cap``."""
    floor = 10.0 ** (-cap / 10.0)
    return (10.0 * torch.log10(1.0 / err.clamp_min(floor))).clamp_max(cap)


class MSE(Metric):
    """Mean squared error per image on [0, 1] data: mean_{c,h,w} (x' - x)^2 (lower is better)."""

    name = "mse"
    modalities = IMAGE
    higher_is_better = False

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        return mse(r, t).float()


class PSNR(Metric):
    """Peak signal-to-noise ratio per image on [0, 1] data: 10 log10(1 / MSE) dB.

    The per-sample value (the run's ``psnr`` is the mean over samples, as in DESIGN.md). A perfect
    reconstruction scores the finite cap of 100 dB (MSE <= 1e-10) instead of infinity.
    """

    name = "psnr"
    modalities = IMAGE
    paper = "standard; data range 1"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        return psnr_from_mse(mse(r, t)).float()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of SSIM (``size`` taps centred on 0)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(recon: torch.Tensor, truth: torch.Tensor, size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0) -> torch.Tensor:
    """Per-sample SSIM of ``(N, C, H, W)`` tensors (Wang et al. 2004), mean over channels and valid positions.

    Local statistics use a separable Gaussian window (``size`` taps, ``sigma``) and population (biased)
    (co)variances; only positions where the whole window lies inside the image are averaged. This equals
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=0)``. Images smaller than the window use the largest odd window that fits.
    """
    n, c, h, w = truth.shape
    size = min(size, h - (1 - h % 2), w - (1 - w % 2))
    g = gaussian_window(size, sigma).to(device=truth.device, dtype=truth.dtype)
    gx, gy = g.view(1, 1, 1, size).expand(c, 1, 1, size), g.view(1, 1, size, 1).expand(c, 1, size, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, gx, groups=c), gy, groups=c)

    x, y = recon, truth
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


class SSIM(Metric):
    """Structural similarity per image (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1).

    Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 2004. SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    averaged over channels and valid window positions (as scikit-image with ``gaussian_weights=True``).
    """

    name = "ssim"
    modalities = IMAGE
    paper = "Wang et al., Image quality assessment: from error visibility to structural similarity, TIP 2004"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        return ssim(r, t).float()

#: The metrics this module registers.
METRICS = [MSE, PSNR, SSIM]
