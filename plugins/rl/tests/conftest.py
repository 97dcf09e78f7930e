"""Shared fixtures of the gradleak-rl tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    """Run torch on one thread: tiny models are much faster so, and robust to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
