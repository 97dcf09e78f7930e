"""MS-SSIM, the recovered flag, feature MSE and LPIPS's local-weights rule."""

from __future__ import annotations

import pytest
import torch

import gradleak
from gradleak import Batch, DependencyMissing
from gradleak_vision.data import photo_crops
from gradleak_vision.metrics import MSSSIM, Recovered, RecoveredFrac, ms_ssim, ssim
from gradleak_vision.perceptual import LPIPS, FeatureMSE, backbone_path

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return photo_crops().data[:6]


def image(x: torch.Tensor) -> Batch:
    return Batch(x, None, "image")


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def test_ms_ssim_is_one_on_identity_and_falls_with_noise(photos):
    x = photos.double()
    assert torch.allclose(ms_ssim(x, x), torch.ones(len(x), dtype=torch.float64))
    a, b = ms_ssim(noisy(x, 0.05), x), ms_ssim(noisy(x, 0.2), x)
    assert bool((a > b).all()) and bool((a < 1).all()) and bool((b >= 0).all())
    # Coarse scales forgive pixel noise that single-scale SSIM punishes.
    assert bool((a > ssim(noisy(x, 0.05), x)).all())
    assert MSSSIM()(image(noisy(photos, 0.05)), image(photos)).shape == (6,)


def test_ms_ssim_matches_single_scale_ssim_on_tiny_images(photos):
    x = photos[:, :, :7, :7].double()  # one scale only: MS-SSIM is SSIM
    y = noisy(x, 0.1)
    assert torch.allclose(ms_ssim(y, x), ssim(y, x).clamp_min(0), atol=1e-12)


def test_recovered_is_psnr_at_least_30(photos):
    close = photos + 0.02  # MSE 4e-4: 34 dB
    far = photos + 0.05    # MSE 2.5e-3: 26 dB
    recon = torch.cat([close[:3], far[3:]]).clamp(0, 1)
    flags = Recovered()(image(recon), image(photos))
    assert flags.tolist()[:3] == [1.0] * 3 and flags.tolist()[3:] == [0.0] * 3
    assert torch.equal(RecoveredFrac()(image(recon), image(photos)), flags)
    assert float(flags.mean()) == 0.5


def test_feature_mse_orders_reconstructions(photos):
    metric = FeatureMSE()
    assert torch.equal(metric(image(photos), image(photos)), torch.zeros(6))
    small, large = metric(image(noisy(photos, 0.05)), image(photos)), metric(image(noisy(photos, 0.3)), image(photos))
    assert bool((small < large).all()) and not metric.higher_is_better
    gray = photos[:, :1]
    assert metric(image(gray), image(gray)).shape == (6,)


def test_new_metrics_are_registered():
    reg = gradleak.registry()
    for name in ("ms_ssim", "recovered", "recovered_frac", "feature_mse", "lpips"):
        assert reg.get("metric", name).name == name


def test_lpips_needs_local_weights_and_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # an empty hub cache
    with pytest.raises(DependencyMissing) as info:
        LPIPS()
    message = str(info.value)
    assert "gradleak-vision[lpips]" in message or str(backbone_path("alex").name) in message
    assert not any(tmp_path.rglob("*.pth"))  # nothing was fetched
