"""Gradient distance of a candidate graph: how GRAIN ranks assembled graphs (``SimilarityScorer``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from gradleak import AttackerView


def observed(update_tensors: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach() for k, v in update_tensors.items() if k in names}


def gradient_distance(view: AttackerView, graph, target: Mapping[str, torch.Tensor],
                      labels: list[int] | None = None) -> tuple[float, int]:
    """Smallest relative L2 distance ``min_a ||a g(G, y) - g*|| / ||g*||`` over labels ``y``; returns (distance, y).

    The scale ``a`` absorbs the sign and learning rate of a one-step FedAvg delta; for a FedSGD gradient the
    best ``a`` of the true graph is 1. GRAIN's scorer tries every label when labels are unknown; so do we.
    """
    model = view.model
    params = [p for n, p in model.named_parameters() if n in target]
    names = [n for n, p in model.named_parameters() if n in target]
    tgt = torch.cat([target[n].flatten() for n in names]).double()
    tnorm = tgt.norm().clamp_min(1e-30)
    best = (float("inf"), 0)
    candidates = labels if labels is not None else list(range(view.num_classes or 2))
    for y in candidates:
        out = view.forward(model, [graph])
        loss = view.loss(out, torch.tensor([y], device=out.device))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        g = torch.cat([(gr if gr is not None else torch.zeros_like(p)).flatten()
                       for gr, p in zip(grads, params)]).double()
        a = float((g @ tgt) / (g @ g).clamp_min(1e-30))
        dist = float((a * g - tgt).norm() / tnorm)
        if dist < best[0]:
            best = (dist, y)
    return best
