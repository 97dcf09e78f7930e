"""The user's private images (``--data``): a folder of PNG/JPEG files or a ``.npy`` array.

Labels (DESIGN.md): a folder whose images sit in subfolders has one class per subfolder, numbered by sorted
subfolder name; otherwise the sorted files (or the rows of the array) get labels ``0, 1, 2, ...`` modulo the
case's number of classes. Samples keep that order: subfolder by subfolder, files sorted by name.

Every image becomes RGB (or grayscale for one channel; ITU-R 601 luma, as Pillow's ``"L"``), then is fitted
to the target size without distortion: the largest centred crop of the target's aspect ratio is resized
with bicubic interpolation (Pillow, anti-aliased when shrinking), and clipped to ``[0, 1]``. Images already
of the target size are used as they are. Every problem raises :class:`gradleak.DataError` with one line
naming the path, what was expected and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gradleak import Batch, DataError

#: File name suffixes read as images (case-insensitive).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
log = logging.getLogger(__name__)
_EXPECTED = "a folder of PNG/JPEG images (optionally one subfolder per class) or a .npy array"
_LUMA = np.array([0.299, 0.587, 0.114])


def load_image_data(path: str | Path, shape: Sequence[int] = (3, 32, 32), *, num_classes: int) -> Batch:
    """Read ``path`` into an image :class:`~gradleak.Batch` of float32 ``(N, *shape)`` in ``[0, 1]``.

    ``shape`` is ``(C, H, W)`` with ``C`` 1 or 3; ``num_classes`` bounds the labels (see the module doc).
    """
    channels, height, width = (int(s) for s in shape)
    if channels not in (1, 3):
        raise ValueError(f"load_image_data supports 1 or 3 channels, got shape {tuple(shape)}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; pass {_EXPECTED}")
    if path.is_dir():
        files, labels = _folder(path, num_classes)
        raw = [_read_image(f, channels) for f in files]
    elif path.suffix.lower() == ".npy":
        raw = _read_array(path, channels)
        labels = [i % num_classes for i in range(len(raw))]
    else:
        raise DataError(f"{path}: cannot read this file as image data; pass {_EXPECTED}")
    _notice_conversions(path, raw, channels, height, width)
    images = [_fit(img, height, width) for img in raw]
    data = torch.tensor(np.stack(images).transpose(0, 3, 1, 2), dtype=torch.float32)
    return Batch(data, torch.tensor(labels, dtype=torch.long), "image")


def _notice_conversions(path: Path, raw: Sequence[np.ndarray], channels: int, height: int, width: int) -> None:
    """Log one notice when images are resized or change channel count, naming the expected shape."""
    resized = [img.shape[:2] for img in raw if img.shape[:2] != (height, width)]
    if resized:
        h, w = resized[0]
        log.warning("%s: %d of %d images are not %dx%d (e.g. %dx%d); centre-cropped to the aspect ratio and "
                    "resized bicubically to the expected %dx%dx%d", path, len(resized), len(raw), height, width, h, w,
                    channels, height, width)
    converted = sum(img.attrs_converted for img in raw if isinstance(img, _Converted))
    if converted:
        kind = "grayscale" if channels == 1 else "RGB"
        log.warning("%s: %d image(s) converted to %s (the case expects %d channel(s))", path, converted, kind, channels)


class _Converted(np.ndarray):
    """An image array that changed channel count while being read (so the loader can say so once)."""

    attrs_converted = 1


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _folder(folder: Path, num_classes: int) -> tuple[list[Path], list[int]]:
    """The image files of ``folder`` in order, with their labels."""
    entries = sorted(folder.iterdir())
    top = [p for p in entries if _is_image(p)]
    classes = [p for p in entries if p.is_dir() and not p.name.startswith(".") and _images_in(p)]
    if classes and top:
        raise DataError(f"{folder}: holds both images ({top[0].name}, ...) and class subfolders "
                        f"({classes[0].name}, ...); move every image into a subfolder named after its class")
    if classes:
        if len(classes) > num_classes:
            raise DataError(f"{folder}: has {len(classes)} class subfolders but the case has {num_classes} classes; "
                            f"use at most {num_classes} subfolders")
        files, labels = [], []
        for label, sub in enumerate(classes):
            found = _images_in(sub)
            files += found
            labels += [label] * len(found)
        return files, labels
    if not top:
        others = [p.name for p in entries if p.is_file() and not p.name.startswith(".")]
        seen = f" (found other files, e.g. {others[0]})" if others else ""
        raise DataError(f"{folder}: contains no PNG/JPEG images{seen}; pass {_EXPECTED}")
    return top, [i % num_classes for i in range(len(top))]


def _read_image(file: Path, channels: int) -> np.ndarray:
    """One image file as float64 ``(H, W, channels)`` in ``[0, 1]``."""
    from PIL import Image, ImageOps

    try:
        with Image.open(file) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grayscale PNG
                gray = np.asarray(im, dtype=np.float64)
                top = 65535.0 if ("16" in im.mode or gray.max() > 255) else 255.0
                arr = np.clip(gray / top, 0.0, 1.0)[..., None]
                return np.repeat(arr, 3, axis=-1) if channels == 3 else arr
            bands = len([b for b in im.getbands() if b != "A"])
            arr = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.float64) / 255.0
            if bands != channels:
                arr = (arr if arr.ndim == 3 else arr[..., None]).view(_Converted)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image {file}: {reason}; replace or remove that file") from None
    return arr if arr.ndim == 3 else arr[..., None]


def _read_array(path: Path, channels: int) -> list[np.ndarray]:
    """The images of a ``.npy`` file as float64 ``(H, W, channels)`` arrays in ``[0, 1]``."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path} as a NumPy array ({exc}); write it with numpy.save") from None
    expected = "images of shape (N, C, H, W) or (N, H, W, C) with C in 1, 3, 4 (or (N, H, W) grayscale)"
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DataError(f"{path}: expected {expected}, got shape {arr.shape}; reshape the array and save it again")
    if arr.shape[1] in (1, 3, 4):
        arr = arr.transpose(0, 2, 3, 1)
    elif arr.shape[3] not in (1, 3, 4):
        raise DataError(f"{path}: expected {expected}, got shape {arr.shape} (no channel axis of size 1, 3 or 4); "
                        "reshape the array and save it again")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: holds no images (shape {arr.shape}); save at least one image")
    arr = _unit_range(path, arr)[..., :3]
    source = arr.shape[-1]
    if channels == 1 and source == 3:
        arr = (arr @ _LUMA)[..., None]
    elif channels == 3 and source == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [a.view(_Converted) for a in arr] if source != channels else list(arr)


def _unit_range(path: Path, arr: np.ndarray) -> np.ndarray:
    """uint8 (/255), uint16 (/65535), other non-negative integers up to 255 (/255), or floats in [0, 1]."""
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    if np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
        if arr.min() < 0 or arr.max() > 255:
            raise DataError(f"{path}: integer images must lie in 0..255, got {arr.min()}..{arr.max()}; "
                            "save them as uint8 or as floats in [0, 1]")
        return arr.astype(np.float64) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: images of dtype {arr.dtype} are not supported; "
                        "save them as uint8 or as floats in [0, 1]")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: the array holds NaN or inf values; remove them and save it again")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(f"{path}: float images must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]; "
                        "divide by 255 (or rescale) and save again")
    return np.clip(arr, 0.0, 1.0)


def _fit(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop ``img`` (``(H, W, C)`` floats) to the target aspect ratio, then resize it bicubically.

    The crop is cut first, so the resampling filter never reads pixels outside it.
    """
    from PIL import Image

    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    if w * height > h * width:  # too wide: keep the centred columns
        keep = max(1, round(h * width / height))
        img = img[:, (w - keep) // 2:(w - keep) // 2 + keep]
    else:  # too tall (or equal aspect): keep the centred rows
        keep = max(1, round(w * height / width))
        img = img[(h - keep) // 2:(h - keep) // 2 + keep]
    planes = []
    for c in range(img.shape[-1]):
        plane = Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32))
        planes.append(np.asarray(plane.resize((width, height), Image.Resampling.BICUBIC)))
    return np.clip(np.stack(planes, axis=-1).astype(np.float64), 0.0, 1.0)
