"""Encodings of real images (MNIST digits, photo crops), their decoding, and the attacker's relaxations."""

from __future__ import annotations

import pytest
import torch

from gradleak_snn.data import mnist_digits
from gradleak_snn.encoding import LATENCY_THRESHOLD, Encoding, decode_image, encode, relax
from gradleak_vision.data import photo_crops


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return mnist_digits()[0][:8]


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return photo_crops().data[:4]


def test_mnist_digits_are_real_and_class_interleaved():
    images, labels = mnist_digits()
    assert images.shape == (4500, 1, 28, 28) and labels[:20].tolist() == list(range(10)) * 2
    assert 0.0 <= float(images.min()) and float(images.max()) == 1.0
    assert 0.05 < float((images > 0.5).float().mean()) < 0.3  # strokes on a dark background


def test_direct_encoding_repeats_the_image_and_decodes_exactly(photos):
    spikes = encode(photos, "direct", 5)
    assert spikes.shape == (4, 5, 3, 32, 32)
    assert torch.allclose(decode_image(spikes, "direct"), photos, atol=1e-6)


def test_rate_encoding_fires_with_the_pixel_intensity(photos):
    gen = torch.Generator().manual_seed(0)
    spikes = encode(photos, "rate", 400, gen)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    # The empirical rate of 400 Bernoulli draws is within 4 standard errors of the intensity.
    assert float((decode_image(spikes, "rate") - photos).abs().max()) < 4 * 0.5 / 400**0.5


def test_latency_encoding_fires_once_brighter_earlier(digits):
    T = 11
    spikes = encode(digits, "latency", T)
    count = spikes.sum(1)
    assert torch.equal(count, (digits >= LATENCY_THRESHOLD).float())
    first = spikes.argmax(1)
    bright, dim = digits >= 0.9, (digits >= 0.1) & (digits < 0.5)
    assert int(first[bright].max()) < int(first[dim].min())
    # Decoding recovers intensities up to the quantisation of the spike time (half a step of 1 / (T - 1)).
    decoded = decode_image(spikes, "latency")
    on = digits >= LATENCY_THRESHOLD
    assert float((decoded[on] - digits[on]).abs().max()) <= 0.5 / (T - 1) + 1e-6
    assert float(decoded[~on].abs().max()) == 0.0


def test_relaxations_agree_with_the_encodings_where_they_are_exact(digits):
    T = 6
    enc = Encoding("latency", T, (1, 28, 28))
    # Intensities whose spike time is an integer step: the relaxation is the exact latency code.
    grid = torch.round(digits * (T - 1)) / (T - 1)
    assert torch.allclose(relax(grid, enc), encode(grid, "latency", T), atol=1e-5)
    rate = relax(digits, Encoding("rate", T, (1, 28, 28)))
    assert torch.allclose(decode_image(rate, "rate"), digits, atol=1e-6)  # expected rates


def test_latency_relaxation_is_differentiable(digits):
    x = digits[:1].clone().clamp(0.05, 0.95).requires_grad_(True)
    out = relax(x, Encoding("latency", 8, (1, 28, 28)))
    (out * torch.arange(8.0).view(1, 8, 1, 1, 1)).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("T", [3, 10, 25])
def test_latency_code_is_snntorchs_linear_normalised_latency(digits, T):
    from snntorch import spikegen

    theirs = spikegen.latency(digits, num_steps=T, linear=True, normalize=True, clip=True, threshold=LATENCY_THRESHOLD)
    assert torch.equal(encode(digits, "latency", T), theirs.transpose(0, 1))
