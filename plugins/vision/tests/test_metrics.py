"""MSE, PSNR and SSIM on known inputs, and SSIM against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from gradleak import Batch
from gradleak_vision.data import held_out_photos, photo_crops
from gradleak_vision.metrics import MSE, PSNR, PSNR_CAP_DB, SSIM


def batch(x: torch.Tensor) -> Batch:
    return Batch(x, torch.zeros(len(x), dtype=torch.long), "image")


def skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(structural_similarity(a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0, channel_axis=0))


def test_metadata():
    assert (MSE.name, PSNR.name, SSIM.name) == ("mse", "psnr", "ssim")
    assert not MSE.higher_is_better and PSNR.higher_is_better and SSIM.higher_is_better
    assert MSE.modalities == PSNR.modalities == SSIM.modalities == frozenset({"image"})


def test_psnr_of_identical_images_is_the_finite_cap():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = PSNR()(batch(x.clone()), batch(x))
    assert out.shape == (3,) and out.dtype == torch.float32
    assert torch.all(out == PSNR_CAP_DB) and math.isfinite(PSNR_CAP_DB)


def test_psnr_and_mse_of_a_known_error():
    truth = torch.zeros(2, 3, 8, 8)
    recon = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.5)])
    assert torch.allclose(MSE()(batch(recon), batch(truth)), torch.tensor([0.01, 0.25]))
    assert torch.allclose(PSNR()(batch(recon), batch(truth)), torch.tensor([20.0, 10 * math.log10(4)]), atol=1e-5)


def test_reconstructions_are_clipped_to_the_data_range():
    truth = torch.ones(1, 3, 8, 8)
    recon = torch.full((1, 3, 8, 8), 5.0)  # an unboxed attack may leave [0, 1]; scored as 1.0 everywhere
    assert float(MSE()(batch(recon), batch(truth))) == 0.0
    assert float(PSNR()(batch(recon), batch(truth))) == PSNR_CAP_DB


def test_shape_mismatch_and_nan_are_refused():
    with pytest.raises(ValueError, match="shape"):
        PSNR()(batch(torch.zeros(1, 3, 8, 8)), batch(torch.zeros(1, 3, 16, 16)))
    with pytest.raises(ValueError, match="NaN"):
        SSIM()(batch(torch.full((1, 3, 16, 16), float("nan"))), batch(torch.zeros(1, 3, 16, 16)))


def test_ssim_of_identical_images_is_one():
    x = photo_crops().data[:4]
    assert torch.allclose(SSIM()(batch(x.clone()), batch(x)), torch.ones(4), atol=1e-6)


def test_ssim_matches_skimage_on_random_images():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 3, 32, 32, generator=g)
    recon = (truth + 0.2 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    recon[2] = torch.rand(3, 32, 32, generator=g)  # unrelated image: SSIM near 0
    ours = SSIM()(batch(recon), batch(truth))
    for i in range(3):
        assert abs(float(ours[i]) - skimage_ssim(recon[i], truth[i])) < 1e-3


def test_ssim_matches_skimage_on_real_photos():
    crops, other = photo_crops().data[:6], held_out_photos().data[:6]
    noisy = (crops + 0.05 * torch.randn(crops.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    for recon in (noisy, other, crops.flip(-1)):
        ours = SSIM()(batch(recon), batch(crops))
        ref = [skimage_ssim(recon[i], crops[i]) for i in range(len(crops))]
        assert np.allclose(ours.numpy(), ref, atol=1e-3), (ours, ref)


def test_ssim_on_images_smaller_than_the_window_is_finite():
    x = torch.rand(2, 1, 7, 9, generator=torch.Generator().manual_seed(0))
    out = SSIM()(batch(x * 0.5), batch(x))
    assert out.shape == (2,) and torch.isfinite(out).all()
    assert torch.allclose(SSIM()(batch(x), batch(x)), torch.ones(2), atol=1e-6)
