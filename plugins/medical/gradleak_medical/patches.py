"""The offline biomedical patches: real CT, MR and ultrasound slices and microscopy images, tiled.

Sources (all real, all installed from PyPI, no download):

- DICOM slices shipped with pydicom's test data (``pydicom.data.get_testdata_file``): CT (``CT_small.dcm``,
  128x128; ``J2K_pixelrep_mismatch.dcm``, 512x512 when a JPEG 2000 decoder is installed), MR (``MR_small.dcm``,
  64x64; ``examples_overlay.dcm``, 300x484) and ultrasound (``examples_palette.dcm``, ``examples_rgb_color.dcm``);
  pydicom-data's chest X-ray ``RG1_UNCR.dcm`` joins as an X-ray class when that package is installed.
- Microscopy bundled with scikit-image: ``immunohistochemistry`` (histology), ``retina`` (fundus), ``cell``.

Labels are the honest source class (``CLASS_NAMES``: imaging modality or tissue kind), not a diagnosis.
Each source image is windowed to [0, 1] (CT/MR: the 1st-99th percentile window, since the test files carry no
reliable window tags), resized so its short side is between 128 and 256 pixels, and cut into non-overlapping ``size x size``
tiles; nearly flat tiles (std < 0.04: air, background) are dropped. Tiles alternate between the private and
the public set (even/odd tile index), so the two never share pixels. Images are float32 ``(N, 3, size, size)``,
grayscale replicated to three channels so that every image attack and metric of the vision plugin applies.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from gradleak import Batch

log = logging.getLogger(__name__)

#: (class name, [(loader kind, name)]) in label order; classes whose sources are all missing are dropped.
_SOURCES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("ct", (("dicom", "CT_small.dcm"), ("dicom", "J2K_pixelrep_mismatch.dcm"))),
    ("mr", (("dicom", "MR_small.dcm"), ("dicom", "examples_overlay.dcm"))),
    ("ultrasound", (("dicom", "examples_palette.dcm"), ("dicom", "examples_rgb_color.dcm"))),
    ("histology", (("skimage", "immunohistochemistry"),)),
    ("fundus", (("skimage", "retina"),)),
    ("microscopy", (("skimage", "cell"),)),
    ("xray", (("dicom-data", "RG1_UNCR.dcm"),)),
)
MIN_STD = 0.04
SHORT_SIDE = 128
MAX_SHORT_SIDE = 256


def window(pixels: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Map raw DICOM values to [0, 1] with a percentile window (robust to outliers such as padding values)."""
    px = pixels.astype(np.float64)
    lo, hi = np.percentile(px, [low_pct, high_pct])
    if hi <= lo:
        return np.zeros_like(px)
    return np.clip((px - lo) / (hi - lo), 0.0, 1.0)


def _dicom_image(name: str, external: bool) -> np.ndarray | None:
    import pydicom
    from pydicom.data import get_testdata_file

    try:
        # pydicom finds pydicom-data's files (``external``) through the same call when that package is installed.
        path = get_testdata_file(name, download=False)
    except Exception:  # pydicom raises various errors for files not present locally
        path = None
    if path is None:
        return None
    try:
        ds = pydicom.dcmread(path)
        px = ds.pixel_array
    except Exception as exc:  # e.g. a compressed file without its decoder package
        log.info("skipping %s: %s", name, exc)
        return None
    if px.ndim == 4 or (px.ndim == 3 and px.shape[-1] not in (3, 4)):
        px = px[0]  # the first frame of a multi-frame file
    if px.ndim == 3:
        return np.clip(px[..., :3].astype(np.float64) / max(1.0, float(px.max())), 0, 1)
    return window(px)


def _skimage_image(name: str) -> np.ndarray:
    import skimage.data
    from skimage.util import img_as_float

    return np.clip(img_as_float(getattr(skimage.data, name)()), 0.0, 1.0)


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]


@functools.lru_cache(maxsize=None)
def _tiles(size: int) -> tuple[tuple[str, ...], tuple[tuple[np.ndarray, ...], ...]]:
    from skimage.transform import resize

    names, per_class = [], []
    for cls, sources in _SOURCES:
        tiles: list[np.ndarray] = []
        for kind, name in sources:
            img = _skimage_image(name) if kind == "skimage" else _dicom_image(name, kind == "dicom-data")
            if img is None:
                continue
            img = _rgb(img)
            h, w = img.shape[:2]
            short = min(MAX_SHORT_SIDE, max(SHORT_SIDE, min(h, w)))
            scale = short / min(h, w)
            img = np.clip(resize(img, (max(short, round(h * scale)), max(short, round(w * scale))),
                                 anti_aliasing=True), 0.0, 1.0)
            for y in range(0, img.shape[0] - size + 1, size):
                for x in range(0, img.shape[1] - size + 1, size):
                    tile = img[y:y + size, x:x + size]
                    if tile.std() >= MIN_STD:
                        tiles.append(tile.transpose(2, 0, 1).astype(np.float32))
        if len(tiles) >= 4:
            names.append(cls)
            per_class.append(tuple(tiles))
    return tuple(names), tuple(per_class)


def class_names(size: int = 32) -> tuple[str, ...]:
    """The classes present on this machine (``xray`` needs pydicom-data)."""
    return _tiles(size)[0]


def _split(size: int, public: bool, per_class: int) -> Batch:
    names, per = _tiles(size)
    images, labels = [], []
    for label, tiles in enumerate(per):
        chosen = tiles[int(public)::2][:per_class]
        images.extend(chosen)
        labels.extend([label] * len(chosen))
    # Interleave classes (sample k of class 0, sample k of class 1, ...) so that small batches mix classes.
    by_class: dict[int, list[int]] = {}
    for idx, l in enumerate(labels):
        by_class.setdefault(l, []).append(idx)
    order = [by_class[l][k] for k in range(max(len(v) for v in by_class.values())) for l in sorted(by_class)
             if k < len(by_class[l])]
    x = torch.from_numpy(np.stack([images[i] for i in order]))
    y = torch.tensor([labels[i] for i in order], dtype=torch.long)
    return Batch(x, y, "image")


def medical_patches(size: int = 32, per_class: int = 24) -> Batch:
    """Private patches: up to ``per_class`` tiles of every class, classes interleaved."""
    return _split(size, public=False, per_class=per_class)


def public_medical_patches(size: int = 32, per_class: int = 24) -> Batch:
    """Public patches (the other tiles of the same sources; no pixel shared with the private ones)."""
    return _split(size, public=True, per_class=per_class)
