"""Models as Flower ships them: the ``state_dict`` values in order (parameters and buffers), as arrays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...errors import UsageError


def model_to_ndarrays(model: torch.nn.Module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def ndarrays_to_model(model: torch.nn.Module, arrays: Sequence[np.ndarray]) -> torch.nn.Module:
    state = model.state_dict()
    if len(arrays) != len(state):
        raise UsageError(f"received {len(arrays)} arrays for a model with {len(state)} tensors; server and clients "
                         "must use the same case")
    device = next(iter(state.values())).device
    model.load_state_dict({k: torch.as_tensor(np.asarray(a)).to(device=device, dtype=v.dtype)
                           for (k, v), a in zip(state.items(), arrays)})
    return model


def audit_path(audit_dir: str | Path, server_round: int, partition: int) -> Path:
    """Where an auditing client leaves the batch of one round, for the server to score against."""
    return Path(audit_dir) / f"round{server_round}-client{partition}.pt"
