"""Image data: the built-in offline photo crops, a disjoint public set, a held-out set, and the user's ``--data``.

The default private data are real photographs bundled with scikit-image and scikit-learn (no download): one
class per source photo, :data:`NUM_CLASSES` classes named by :data:`CLASS_NAMES`. Each photo is resized
(anti-aliased) so that its short side is ``4 * size`` pixels, and ``size x size`` crops are taken at
positions drawn by a NumPy generator seeded with ``(seed, class index)``, so crops of one photo do not depend
on the others. Nearly flat crops (pixel standard deviation below :data:`MIN_STD`, e.g. black sky or a white
page margin) are skipped while textured ones are available. All images are float32 ``(N, 3, size, size)`` in
``[0, 1]``, grayscale photos replicated to three channels.

:func:`load_image_data` (the user's folder of PNG/JPEG or ``.npy``) lives in :mod:`gradleak_vision.imagefiles`
and is re-exported here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from gradleak import Batch

from .imagefiles import load_image_data

__all__ = ["CLASS_NAMES", "MIN_STD", "NUM_CLASSES", "held_out_photos", "load_image_data", "photo_crops",
           "public_photo_crops"]

_SKIMAGE = ("astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "coins", "brick", "grass",
            "gravel", "immunohistochemistry", "moon", "page", "retina", "text", "cell", "clock", "microaneurysms")
_SKLEARN = ("china", "flower")

#: The class names of the built-in photo data: class ``k`` is crops of photo ``CLASS_NAMES[k]``.
CLASS_NAMES: tuple[str, ...] = _SKIMAGE + _SKLEARN
NUM_CLASSES: int = len(CLASS_NAMES)
#: Crops whose pixel standard deviation is below this are used only when a photo has too few textured ones.
MIN_STD = 0.03

Box = tuple[int, int]  # top-left corner (y, x) of a crop


def _as_rgb_float(img: np.ndarray) -> np.ndarray:
    from skimage.util import img_as_float

    out = img_as_float(img)
    if out.ndim == 2:
        out = np.stack([out] * 3, axis=-1)
    return np.clip(out[..., :3], 0.0, 1.0)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=None)
def _photo(name: str, short_side: int) -> np.ndarray:
    """A source photo as float64 ``(H, W, 3)`` in ``[0, 1]``, resized so that ``min(H, W) == short_side``."""
    from skimage.transform import resize

    if name in _SKLEARN:
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        from matplotlib.cbook import get_sample_data
        from PIL import Image

        with Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            img = np.asarray(im.convert("RGB"))
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
    rgb = _as_rgb_float(img)
    h, w = rgb.shape[:2]
    scale = short_side / min(h, w)
    shape = (max(short_side, round(h * scale)), max(short_side, round(w * scale)))
    return _readonly(np.clip(resize(rgb, shape, anti_aliasing=True), 0.0, 1.0))


def _overlaps(a: Box, b: Box, size: int) -> bool:
    return abs(a[0] - b[0]) < size and abs(a[1] - b[1]) < size


def _positions(photo: np.ndarray, size: int, count: int, rng: np.random.Generator, avoid: Sequence[Box] = (),
               fill: bool = True, tries: int = 256) -> list[Box]:
    """Up to ``count`` distinct crop corners, textured first, none overlapping a box of ``avoid``.

    Candidates are drawn in order from ``rng``; those with standard deviation >= :data:`MIN_STD` are kept in
    draw order. With ``fill``, a shortfall is made up with the most textured remaining candidates.
    """
    h, w = photo.shape[:2]
    chosen: list[Box] = []
    spare: list[tuple[float, Box]] = []
    seen: set[Box] = set()
    for _ in range(tries):
        if len(chosen) == count:
            break
        box = (int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)))
        if box in seen or any(_overlaps(box, a, size) for a in avoid):
            continue
        seen.add(box)
        std = float(photo[box[0]:box[0] + size, box[1]:box[1] + size].std())
        if std >= MIN_STD:
            chosen.append(box)
        else:
            spare.append((std, box))
    if fill and len(chosen) < count:
        spare.sort(key=lambda item: -item[0])
        chosen.extend(box for _, box in spare[:count - len(chosen)])
    return chosen


def _cut(photo: np.ndarray, boxes: Sequence[Box], size: int) -> list[np.ndarray]:
    return [photo[y:y + size, x:x + size].transpose(2, 0, 1).astype(np.float32) for y, x in boxes]


def _interleave(per_class: Sequence[Sequence[np.ndarray]], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Round-robin over classes: crop 0 of every class, then crop 1 of every class, ..."""
    images, out_labels = [], []
    for j in range(max((len(c) for c in per_class), default=0)):
        for crops, label in zip(per_class, labels):
            if j < len(crops):
                images.append(crops[j])
                out_labels.append(label)
    return _readonly(np.stack(images)), _readonly(np.asarray(out_labels, dtype=np.int64))


@functools.lru_cache(maxsize=None)
def _private_boxes(size: int, per_photo: int, seed: int) -> tuple[tuple[Box, ...], ...]:
    boxes = []
    for k, name in enumerate(CLASS_NAMES):
        rng = np.random.default_rng([seed, k, 0])
        boxes.append(tuple(_positions(_photo(name, 4 * size), size, per_photo, rng)))
    return tuple(boxes)


@functools.lru_cache(maxsize=None)
def _photo_arrays(size: int, per_photo: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    boxes = _private_boxes(size, per_photo, seed)
    crops = [_cut(_photo(name, 4 * size), b, size) for name, b in zip(CLASS_NAMES, boxes)]
    return _interleave(crops, range(NUM_CLASSES))


@functools.lru_cache(maxsize=None)
def _public_arrays(size: int, per_photo: int, seed: int, private_per_photo: int) -> tuple[np.ndarray, np.ndarray]:
    private = _private_boxes(size, private_per_photo, seed)
    crops = []
    for k, name in enumerate(CLASS_NAMES):
        photo = _photo(name, 4 * size)
        rng = np.random.default_rng([seed, k, 1])
        crops.append(_cut(photo, _positions(photo, size, per_photo, rng, avoid=private[k], fill=False), size))
    return _interleave(crops, range(NUM_CLASSES))


def _batch(images: np.ndarray, labels: np.ndarray) -> Batch:
    return Batch(torch.tensor(images), torch.tensor(labels), "image")


def photo_crops(size: int = 32, per_photo: int = 8, seed: int = 0) -> Batch:
    """The built-in private data: ``per_photo`` crops of each of the :data:`NUM_CLASSES` photos.

    Ordered class-interleaved (sample ``i`` has label ``i % NUM_CLASSES``), so every batch of up to
    ``NUM_CLASSES`` consecutive samples has distinct labels. Deterministic in ``seed``; computed once per
    process and returned as fresh tensors on the CPU (160 images by default).
    """
    return _batch(*_photo_arrays(size, per_photo, seed))


def public_photo_crops(size: int = 32, per_photo: int = 4, seed: int = 0, private_per_photo: int = 8) -> Batch:
    """Public data for pretraining and the ``surrogate`` capability: crops of the same photos (same classes)
    that share no pixel with any crop of ``photo_crops(size, private_per_photo, seed)``.

    Up to ``per_photo`` crops per photo (fewer where the private crops leave no room), class-interleaved.
    """
    return _batch(*_public_arrays(size, per_photo, seed, private_per_photo))


@functools.lru_cache(maxsize=None)
def _held_out_arrays(size: int, per_source: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage.data import lfw_subset
    from skimage.transform import resize

    photo = _photo("grace_hopper", 4 * size)
    hopper = _cut(photo, _positions(photo, size, per_source, np.random.default_rng([seed, 1000])), size)
    faces = lfw_subset()[:100]  # the first 100 images of the subset are faces, the rest are not
    picks = np.random.default_rng([seed, 1001]).choice(len(faces), size=per_source, replace=False)
    faces = [_as_rgb_float(resize(faces[i], (size, size), anti_aliasing=True)).transpose(2, 0, 1).astype(np.float32)
             for i in picks]
    images, _ = _interleave([hopper, faces], [0, 1])
    return images, _readonly(np.arange(len(images), dtype=np.int64) % NUM_CLASSES)


def held_out_photos(size: int = 32, per_source: int = 8, seed: int = 0) -> Batch:
    """Real photos the defaults never use, for tests that must not tune on the default data.

    ``per_source`` crops of Grace Hopper's portrait (matplotlib's sample data, short side resized to
    ``4 * size``) interleaved with ``per_source`` faces of scikit-image's LFW subset (25x25 grayscale, resized
    to ``size`` and replicated to RGB). Labels are ``0, 1, 2, ...`` modulo :data:`NUM_CLASSES` (they are not
    classes of the photo data). Offline and deterministic.
    """
    return _batch(*_held_out_arrays(size, per_source, seed))
