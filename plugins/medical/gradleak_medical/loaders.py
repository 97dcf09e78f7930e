"""Loaders of the user's medical data: a folder of DICOM files, and MedMNIST ``.npz`` files.

DICOM (``--data DIR``): every ``*.dcm`` file under ``DIR`` (sorted), first frame of multi-frame files,
windowed to [0, 1] with the file's own VOI window (Window Center/Width) when present, else the 1st-99th
percentile; resized to the case's shape. Labels are the subfolder (one class each) when there are
subfolders, else the DICOM Modality tag mapped onto the built-in classes (CT, MR, US, ...). Only pixels and
that label are kept: no patient name, id, date or any other header value leaves this module, so none can
reach results or reports. A compressed file whose decoder package is missing exits 2 naming the file and
the package.

MedMNIST (``--data bloodmnist.npz``): the official layout, arrays ``train_images`` ``(N, 28, 28)`` or
``(N, 28, 28, 3)`` uint8 and ``train_labels`` ``(N, 1)`` (or ``(N, 14)`` multi-label for ChestMNIST, whose
label is then the first positive finding or 0), plus ``val_*`` and ``test_*``; ``split`` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gradleak import Batch, DataError

from .patches import window

_MODALITY_CLASS = {"CT": "ct", "MR": "mr", "US": "ultrasound", "SM": "histology", "OP": "fundus", "XA": "xray",
                   "CR": "xray", "DX": "xray", "RG": "xray"}
_DECODERS = {"1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg", "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
             "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
             "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
             "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg", "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
             "1.2.840.10008.1.2.5": "pylibjpeg-rle"}


def _fit(img: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    from skimage.transform import resize

    c, h, w = shape
    if img.ndim == 2:
        img = np.stack([img] * c, axis=-1)
    elif img.shape[-1] != c:
        img = np.stack([img[..., :3].mean(-1)] * c, axis=-1) if c != 3 else img[..., :3]
    out = resize(img, (h, w), anti_aliasing=True)
    return np.clip(out, 0, 1).transpose(2, 0, 1).astype(np.float32)


def read_dicom_pixels(path: Path) -> tuple[np.ndarray, str | None]:
    """``(pixels in [0, 1], Modality tag)`` of one DICOM file; nothing else of the header is returned."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"--data {path}: not a readable DICOM file ({type(exc).__name__}); remove it or fix it") from None
    try:
        px = ds.pixel_array
    except Exception as exc:
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
        package = _DECODERS.get(syntax)
        fix = f"pip install {package}" if package else "install a pydicom pixel-data handler for it"
        raise DataError(f"--data {path}: compressed pixel data (transfer syntax {syntax or 'unknown'}) cannot be "
                        f"decoded here ({type(exc).__name__}); {fix}") from None
    if px.ndim == 4 or (px.ndim == 3 and px.shape[-1] not in (3, 4)):
        px = px[0]
    if px.ndim == 3:
        img = np.clip(px[..., :3].astype(np.float64) / max(1.0, float(px.max())), 0, 1)
    else:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        values = px.astype(np.float64) * slope + intercept
        try:
            c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
            w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
            img = np.clip((values - (c - w / 2)) / w, 0, 1) if w > 0 else window(values)
        except (TypeError, ValueError):
            img = window(values)
    modality = ds.get("Modality")
    return img, (str(modality) if modality else None)


def load_dicom_folder(folder: Path, shape: Sequence[int], class_names: Sequence[str]) -> Batch:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ".dicom"))
    if not files:
        raise DataError(f"--data {folder}: no .dcm files found; pass a folder of DICOM files")
    subdirs = sorted({p.parent.relative_to(folder).parts[0] for p in files if p.parent != folder})
    images, labels = [], []
    for f in files:
        img, modality = read_dicom_pixels(f)
        images.append(_fit(img, shape))
        if subdirs:
            labels.append(subdirs.index(f.relative_to(folder).parts[0]) % len(class_names))
        else:
            cls = _MODALITY_CLASS.get(modality or "", None)
            labels.append(class_names.index(cls) if cls in class_names else 0)
    return Batch(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), "image")


def load_medmnist(path: Path, shape: Sequence[int], split: str = "test") -> Batch:
    """A MedMNIST ``.npz`` (official layout); images fitted to ``shape``, labels as class ids."""
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"--data {path}: not a readable .npz file ({exc}); pass a MedMNIST .npz") from None
    key_x, key_y = f"{split}_images", f"{split}_labels"
    missing = [k for k in (key_x, key_y) if k not in arrays.files]
    if missing:
        raise DataError(f"--data {path}: missing arrays {missing}; a MedMNIST .npz holds train/val/test_images and "
                        f"_labels (found: {', '.join(arrays.files)})")
    x, y = arrays[key_x], arrays[key_y]
    if x.ndim not in (3, 4) or len(x) != len(y):
        raise DataError(f"--data {path}: {key_x} has shape {x.shape} and {key_y} {y.shape}; expected (N, H, W[, 3]) "
                        "and (N, 1) or (N, K)")
    y = y.reshape(len(y), -1)
    labels = y[:, 0] if y.shape[1] == 1 else np.where(y.any(1), y.argmax(1), 0)
    images = np.stack([_fit(img.astype(np.float64) / 255.0, shape) for img in x])
    return Batch(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), "image")
