"""The utility cost of an update-stage defense: what the client's model loses when it trains on the defended update.

Every update defense reports, besides the relative L2 distortion ``||U' - U|| / ||U||`` of the update, the
client's loss (and accuracy, for classifiers) on its own batch after one step with the defended update next to
the same step with the clean one. The step is ``theta - lr * g`` for a FedSGD gradient (``lr``: the case's
``local_lr``) and ``theta + delta`` for a FedAvg delta (the delta already is the step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.func import functional_call

from ..components import ClientContext
from ..types import Batch, Update


def distortion(clean: Update, defended: Update) -> float:
    """``||U' - U||_2 / ||U||_2`` over all tensors (0 for an all-zero clean update)."""
    num = sum(float((defended.tensors[k].double() - v.double()).pow(2).sum()) for k, v in clean.tensors.items())
    den = sum(float(v.double().pow(2).sum()) for v in clean.tensors.values())
    return math.sqrt(num / den) if den > 0 else 0.0


def stepped(context: ClientContext, update: Update, lr: float | None = None) -> dict[str, torch.Tensor]:
    """The client's parameters after applying ``update`` once (see the module docstring)."""
    params = {n: p.detach() for n, p in context.model.named_parameters() if p.requires_grad}
    if update.kind == "delta":
        return {n: p + update.tensors[n].to(p) for n, p in params.items() if n in update.tensors}
    rate = lr if lr is not None else float(getattr(context.case.config, "local_lr", 1e-2))
    return {n: p - rate * update.tensors[n].to(p) for n, p in params.items() if n in update.tensors}


def outputs(context: ClientContext, params: Mapping[str, torch.Tensor], seed: int = 0, batch: Batch | None = None) -> Any:
    """The client's model outputs on its batch (or ``batch``) with ``params``; BatchNorm buffers are copied,
    never moved."""
    model = context.model
    full = {n: p.detach() for n, p in model.named_parameters()}
    full.update(params)
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    class _Bound(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return functional_call(self.inner, (full, buffers), args, kwargs)

    device = next(model.parameters()).device
    # Dropout must draw the same masks for both evaluations being compared.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return context.case.forward(_Bound(), context.batch if batch is None else batch)


def client_loss(context: ClientContext, params: Mapping[str, torch.Tensor]) -> float:
    """The client's mean loss on its batch with ``params`` (no gradient; the model's buffers untouched)."""
    with torch.no_grad():
        return float(context.case.loss(outputs(context, params), context.batch.labels))


def accuracy(out: Any, labels: torch.Tensor | None) -> float | None:
    """Top-1 accuracy of class logits ``(N, K)`` against class ids ``(N,)``; None when that does not apply."""
    if not isinstance(out, torch.Tensor) or labels is None or out.dim() != 2:
        return None
    if labels.dim() == 2 and labels.shape == out.shape:
        labels = labels.argmax(-1)
    if labels.dim() != 1 or labels.shape[0] != out.shape[0] or labels.is_floating_point():
        return None
    return float((out.argmax(-1) == labels).float().mean())


def training_cost(
    clean: Update, defended: Update, context: ClientContext | None, lr: float | None = None
) -> dict[str, float]:
    """``update_distortion`` plus, with a context, ``loss_clean``, ``loss_defended``, ``loss_increase`` and,
    for classifiers, ``accuracy_clean``, ``accuracy_defended`` (fractions) after one step with each update."""
    cost = {"update_distortion": distortion(clean, defended)}
    if context is None:
        return cost
    with torch.no_grad():
        labels = context.batch.labels
        out_clean = outputs(context, stepped(context, clean, lr))
        out_def = outputs(context, stepped(context, defended, lr))
        loss_clean = float(context.case.loss(out_clean, labels))
        loss_def = float(context.case.loss(out_def, labels))
    if math.isfinite(loss_clean) and math.isfinite(loss_def):
        cost.update(loss_clean=loss_clean, loss_defended=loss_def, loss_increase=loss_def - loss_clean)
    acc_clean, acc_def = accuracy(out_clean, labels), accuracy(out_def, labels)
    if acc_clean is not None and acc_def is not None:
        cost.update(accuracy_clean=acc_clean, accuracy_defended=acc_def)
    return cost
