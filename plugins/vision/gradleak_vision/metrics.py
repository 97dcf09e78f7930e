"""Per-sample image metrics on ``[0, 1]`` data: MSE, PSNR, SSIM, MS-SSIM and the ``recovered`` flag.

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
    blur = _blur(c, size, sigma, truth)
    return _ssim_terms(recon, truth, blur, k1, k2, data_range)[0].flatten(1).mean(1)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, blur, k1: float, k2: float,
                data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSIM map and its contrast-structure part ``(2 s_xy + C2) / (s_x^2 + s_y^2 + C2)``."""
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs, cs


def _blur(c: int, size: int, sigma: float, like: torch.Tensor):
    g = gaussian_window(size, sigma).to(device=like.device, dtype=like.dtype)
    gx, gy = g.view(1, 1, 1, size).expand(c, 1, 1, size), g.view(1, 1, size, 1).expand(c, 1, size, 1)
    return lambda x: F.conv2d(F.conv2d(x, gx, groups=c), gy, groups=c)


#: Scale weights of MS-SSIM (Wang, Simoncelli, Bovik 2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: The coarsest scale MS-SSIM uses keeps at least this many pixels on its short side.
MS_SSIM_MIN_SIDE = 4


def ms_ssim(recon: torch.Tensor, truth: torch.Tensor, size: int = 11, sigma: float = 1.5,
            k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0) -> torch.Tensor:
    """Per-sample multi-scale SSIM of ``(N, C, H, W)`` tensors (Wang, Simoncelli, Bovik 2003).

    MS-SSIM = l_M^{w_M} * prod_{j=1..M} cs_j^{w_j}: contrast-structure at every scale, luminance at the
    coarsest, 2x2 average pooling between scales. The paper's five scales need images of at least 176 px; for
    smaller images we use the scales whose short side stays >= :data:`MS_SSIM_MIN_SIDE` (four on 32x32), the
    first weights renormalised to sum to one, and the window shrunk as in :func:`ssim`. Negative ``cs``
    values are clamped to 0 before the fractional powers (torchmetrics' ``normalize="relu"``), so a badly
    anti-correlated image scores 0 rather than NaN.
    """
    n, c, h, w = truth.shape
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and min(h, w) // 2**scales >= MS_SSIM_MIN_SIDE:
        scales += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=truth.dtype, device=truth.device)
    weights = weights / weights.sum()
    x, y = recon, truth
    out = torch.ones(n, dtype=truth.dtype, device=truth.device)
    for j in range(scales):
        hh, ww = x.shape[-2:]
        k = min(size, hh - (1 - hh % 2), ww - (1 - ww % 2))
        s_map, cs_map = _ssim_terms(x, y, _blur(c, k, sigma, y), k1, k2, data_range)
        value = (s_map if j == scales - 1 else cs_map).flatten(1).mean(1).clamp_min(0.0)
        out = out * value ** weights[j]
        if j < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


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

class MSSSIM(Metric):
    """Multi-scale structural similarity per image (Gaussian window 11, sigma 1.5, up to five scales).

    Wang, Simoncelli, Bovik, "Multiscale structural similarity for image quality assessment", Asilomar 2003.
    MS-SSIM = l_M^{w_M} prod_j cs_j^{w_j}, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); small images use
    fewer scales with renormalised weights (see :func:`ms_ssim`).
    """

    name = "ms_ssim"
    modalities = IMAGE
    paper = "Wang et al., Multiscale structural similarity for image quality assessment, Asilomar 2003"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        return ms_ssim(r, t).float()


#: An image counts as recovered from this PSNR on (dB, data range 1).
RECOVERED_PSNR_DB = 30.0


class Recovered(Metric):
    """Per-image flag: 1 when the reconstruction reaches PSNR >= 30 dB, else 0.

    The bar of Fowl et al. ("Robbing the Fed", ICLR 2022) and of the exact attacks: at 30 dB an image is
    visually identical to the truth. The run's mean of this flag is the fraction recovered (``recovered_frac``).
    """

    name = "recovered"
    modalities = IMAGE
    paper = "Fowl et al., Robbing the Fed, ICLR 2022 (recovery at PSNR >= 30 dB)"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        return (psnr_from_mse(mse(r, t)) >= RECOVERED_PSNR_DB).float()


class RecoveredFrac(Recovered):
    """Fraction of images recovered (PSNR >= 30 dB): per image the ``recovered`` flag, whose mean over a run
    (what ``metrics`` reports) is the fraction."""

    name = "recovered_frac"


from .perceptual import LPIPS, FeatureMSE  # noqa: E402  (registered here; defined apart)

#: The metrics this module registers.
METRICS = [MSE, PSNR, SSIM, MSSSIM, Recovered, RecoveredFrac, LPIPS, FeatureMSE]
