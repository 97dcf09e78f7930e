"""Gradient-matching objectives: distance between a candidate's update and the observed one.

Each takes the candidate update ``G`` (a tuple of tensors with a leading restart dimension ``R``) and the
observed update ``T`` (same tensors without it) and returns one value per restart, shape ``(R,)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Objective = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]


def _flat_sum(values: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([v.flatten(1).sum(1) for v in values]).sum(0)


def l2(G: Sequence[torch.Tensor], T: Sequence[torch.Tensor]) -> torch.Tensor:
    """DLG (Zhu et al. 2019): ``sum_l ||G_l - T_l||_2^2``."""
    return _flat_sum([(g - t).pow(2) for g, t in zip(G, T)])


def cosine(G: Sequence[torch.Tensor], T: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverting Gradients (Geiping et al. 2020): ``1 - <G, T> / (||G|| ||T||)`` over all layers at once."""
    dot = _flat_sum([g * t for g, t in zip(G, T)])
    g_norm = _flat_sum([g.pow(2) for g in G]).clamp_min(1e-24).sqrt()
    t_norm = torch.stack([t.pow(2).sum() for t in T]).sum().clamp_min(1e-24).sqrt()
    return 1 - dot / (g_norm * t_norm)


def tag(alpha: float = 0.01) -> Objective:
    """TAG (Deng et al. 2021): ``sum_l ||G_l - T_l||_2^2 + alpha * ||G_l - T_l||_1``.

    TAG scales the L1 term per layer by a factor ``alpha``; the paper leaves its value to tuning, we take a
    single ``alpha`` (default 0.01) for all layers.
    """

    def objective(G: Sequence[torch.Tensor], T: Sequence[torch.Tensor]) -> torch.Tensor:
        diffs = [g - t for g, t in zip(G, T)]
        return _flat_sum([d.pow(2) for d in diffs]) + alpha * _flat_sum([d.abs() for d in diffs])

    return objective


def masked(match: Objective, masks: Sequence[torch.Tensor | None]) -> Objective:
    """``match`` restricted to the coordinates where ``masks`` is true (``None``: the whole tensor).

    For an attacker who sees only part of the update (selective encryption): hidden coordinates are zeroed
    in both the candidate and the observed update, so they add nothing to the distance (L2, TAG) and nothing
    to either norm (cosine).
    """

    def objective(G: Sequence[torch.Tensor], T: Sequence[torch.Tensor]) -> torch.Tensor:
        G = [g if m is None else g * m for g, m in zip(G, masks)]
        T = [t if m is None else t * m for t, m in zip(T, masks)]
        return match(G, T)

    return objective


def objective(name: str, tag_alpha: float = 0.01) -> Objective:
    if name == "l2":
        return l2
    if name == "cosine":
        return cosine
    if name == "tag":
        return tag(tag_alpha)
    raise ValueError(f"unknown objective {name!r}; choose l2, cosine or tag")
