"""Shared fixtures of the gradleak-vision tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def _write_image(path: Path, array: np.ndarray) -> Path:
    """Write an ``(H, W)`` or ``(H, W, C)`` uint8 array as an image (format from the suffix), making folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def write_image():
    """``write_image(path, uint8_array) -> path``."""
    return _write_image


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def single_thread():
    """Run torch on one thread: tiny models are much faster so, and robust to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
