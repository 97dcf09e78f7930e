"""The image modality: search space, matching, slicing, saving and the picture grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gradleak import Batch
from gradleak.matching import match_order
from gradleak_vision.data import photo_crops
from gradleak_vision.modality import GRID_GAP, Image, ImageSpace


def images(n: int, seed: int = 0, shape=(3, 32, 32)) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, *shape, generator=g), torch.arange(n), "image")


def test_metadata_and_success():
    m = Image()
    assert m.name == "image" and m.primary_metric == "psnr"
    assert m.default_metrics == ("psnr", "ssim", "mse", "label_acc")
    assert m.success_criterion == "PSNR >= 20 dB"
    assert m.is_success({"psnr": 20.0}) and not m.is_success({"psnr": 19.99})


def test_search_space():
    space = ImageSpace((3, 32, 32), boxed=True)
    z = space.init(2, 4, torch.Generator().manual_seed(0))
    assert z.shape == (2, 4, 3, 32, 32) and z.device.type == "cpu"
    assert torch.equal(z, space.init(2, 4, torch.Generator().manual_seed(0)))
    assert space.decode(z) is z
    unboxed = z.clone()
    ImageSpace((3, 32, 32), boxed=False).project(unboxed)
    assert torch.equal(unboxed, z)
    space.project(z)
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    b = space.to_batch(z[0], torch.arange(4))
    assert b.modality == "image" and len(b) == 4


def test_pairwise_cost_is_the_mse_matrix_and_recovers_a_permutation():
    truth, recon = images(3), images(2, seed=1)
    cost = Image().pairwise_cost(recon, truth)
    assert cost.shape == (2, 3)
    assert torch.isclose(cost[1, 2], (recon.data[1] - truth.data[2]).pow(2).mean())
    perm = torch.tensor([2, 0, 1])
    shuffled = Image().select(truth, perm)
    order = match_order(Image().pairwise_cost(shuffled, truth))
    assert torch.equal(Image().select(shuffled, order).data, truth.data)


def test_select_and_concat():
    m = Image()
    a, b = images(3), images(2, seed=1)
    s = m.select(a, torch.tensor([2, 0]))
    assert torch.equal(s.data, a.data[[2, 0]]) and s.labels.tolist() == [2, 0]
    c = m.concat([a, b])
    assert c.data.shape == (5, 3, 32, 32) and c.labels.tolist() == [0, 1, 2, 0, 1] and c.modality == "image"
    unlabelled = m.concat([a.replace(labels=None), b])
    assert unlabelled.labels is None and len(unlabelled) == 5
    with pytest.raises(ValueError):
        m.concat([])


def test_save_writes_clipped_float32_npy(tmp_path):
    b = images(3)
    b = b.replace(data=b.data * 3 - 1)  # outside [0, 1]
    paths = Image().save(b, tmp_path / "out", "recon")
    assert paths == {"recon": str(tmp_path / "out" / "recon.npy")}
    arr = np.load(paths["recon"])
    assert arr.shape == (3, 3, 32, 32) and arr.dtype == np.float32
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    assert np.allclose(arr, b.data.clamp(0, 1).numpy())


def test_grid_png_has_truth_on_top_and_reconstruction_below(tmp_path):
    truth = photo_crops().data[:3]
    recon = torch.zeros_like(truth)
    paths = Image().save_pictures(Batch(truth, None, "image"), Batch(recon, None, "image"), tmp_path)
    assert set(paths) == {"grid"}
    with PILImage.open(paths["grid"]) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (3 * 128 + 4 * GRID_GAP, 2 * 128 + 3 * GRID_GAP)
        pixels = np.asarray(im)
    g = GRID_GAP
    top = pixels[g:g + 128, g:g + 128]
    expected = np.rint(truth[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(top[::4, ::4], expected) and np.array_equal(top[3::4, 3::4], expected)  # x4 nearest
    assert (pixels[2 * g + 128:2 * g + 256, g:g + 128] == 0).all()  # the black reconstruction below
    assert (pixels[:g] == 255).all()  # white gap


def test_grid_wraps_and_draws_grayscale(tmp_path):
    truth = images(20, shape=(1, 32, 32))
    paths = Image().save_pictures(truth, truth, tmp_path)
    with PILImage.open(paths["grid"]) as im:
        assert im.size == (16 * 128 + 17 * GRID_GAP, 4 * 128 + 6 * GRID_GAP)
