"""Deterministic initialisation of torch-initialised models from a caller's generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)


def build_seeded(make: Callable[[], M], generator: torch.Generator, device: torch.device | str | None = None) -> M:
    """Call ``make()`` with torch's global RNG seeded from ``generator``, then restore the global RNG.

    The models here keep torch's (or their paper's) default initialisation, which draws from the global RNG;
    seeding it from the run's generator makes the model a function of that generator alone, and forking
    keeps the caller's global state untouched.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make()
    return model.to(device if device is not None else generator.device)
