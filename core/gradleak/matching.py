"""Order-invariant scoring: match reconstructed samples to true ones before comparing them."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def match_order(cost: torch.Tensor) -> torch.Tensor:
    """For a ``(n_recon, n_truth)`` cost matrix, the recon index assigned to each truth index (minimum total
    cost, Hungarian algorithm). Non-finite costs are treated as the worst possible."""
    c = cost.detach().double().cpu().numpy()
    worst = np.nanmax(np.where(np.isfinite(c), c, np.nan)) if np.isfinite(c).any() else 0.0
    c = np.where(np.isfinite(c), c, worst + 1.0)
    rows, cols = linear_sum_assignment(c)
    order = np.empty(c.shape[1], dtype=np.int64)
    order[cols] = rows
    return torch.as_tensor(order, dtype=torch.long)
