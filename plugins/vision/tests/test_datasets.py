"""The built-in photo crops, the public crops and the held-out photos."""

from __future__ import annotations

import torch

from gradleak_vision import data
from gradleak_vision.cases import LeNetCase
from gradleak_vision.data import CLASS_NAMES, MIN_STD, NUM_CLASSES, held_out_photos, photo_crops, public_photo_crops


def test_photo_crops_shape_range_and_classes():
    b = photo_crops()
    assert b.modality == "image" and b.data.shape == (8 * NUM_CLASSES, 3, 32, 32)
    assert b.data.dtype == torch.float32 and b.labels.dtype == torch.long
    assert 0.0 <= float(b.data.min()) and float(b.data.max()) <= 1.0
    assert NUM_CLASSES == len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 20
    assert torch.equal(b.labels.bincount(minlength=NUM_CLASSES), torch.full((NUM_CLASSES,), 8))
    assert LeNetCase.num_classes == NUM_CLASSES


def test_photo_crops_interleave_classes():
    labels = photo_crops().labels
    assert torch.equal(labels, torch.arange(len(labels)) % NUM_CLASSES)
    assert len(set(labels[:4].tolist())) == 4


def test_photo_crops_are_textured_real_images():
    x = photo_crops().data
    stds = x.flatten(1).std(1)
    assert float(stds.min()) > 0.005  # no flat crop
    assert float((stds >= MIN_STD).float().mean()) > 0.8
    assert len({tuple(v.flatten()[:64].tolist()) for v in x}) == len(x)  # all distinct


def test_photo_crops_are_deterministic_and_fresh():
    a = photo_crops()
    a.data.zero_()  # the caller's copy; the cache must not change
    b = photo_crops()
    assert float(b.data.abs().sum()) > 0
    data._photo_arrays.cache_clear()
    data._private_boxes.cache_clear()
    c = photo_crops()
    assert torch.equal(b.data, c.data) and torch.equal(b.labels, c.labels)
    assert not torch.equal(photo_crops(seed=1).data, b.data)
    small = photo_crops(size=16, per_photo=2)
    assert small.data.shape == (2 * NUM_CLASSES, 3, 16, 16)


def test_public_crops_share_no_pixel_with_private_ones():
    private = data._private_boxes(32, 8, 0)
    pub = public_photo_crops()
    assert len(pub) > NUM_CLASSES and int(pub.labels.max()) < NUM_CLASSES
    assert pub.data.shape[1:] == (3, 32, 32)
    for k, name in enumerate(CLASS_NAMES):
        photo = data._photo(name, 128)
        rng = data.np.random.default_rng([0, k, 1])
        for box in data._positions(photo, 32, 4, rng, avoid=private[k], fill=False):
            assert not any(data._overlaps(box, other, 32) for other in private[k])
    priv = photo_crops().data.flatten(1)
    assert torch.cdist(pub.data.flatten(1), priv).min() > 0
    assert LeNetCase().public_data() is not None


def test_held_out_photos_are_new_real_images():
    h = held_out_photos()
    assert h.data.shape == (16, 3, 32, 32) and h.data.dtype == torch.float32
    assert 0.0 <= float(h.data.min()) and float(h.data.max()) <= 1.0
    assert int(h.labels.max()) < NUM_CLASSES
    assert torch.cdist(h.data.flatten(1), photo_crops().data.flatten(1)).min() > 1.0
    faces = h.data[1::2]
    assert torch.equal(faces[:, 0], faces[:, 1])  # grayscale faces replicated to RGB
    assert torch.equal(held_out_photos().data, h.data)
