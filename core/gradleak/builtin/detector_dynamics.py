"""Dynamics detectors: anomalous loss, activations and gradients of the received model on the client's batch.

Carletti, Foggia, Mazzocca, Parrella, Vento, "On the Detectability of Active Gradient Inversion Attacks in
Federated Learning" (IEEE S&P 2026), second family. These need the client's own batch: ``score`` takes it as
the keyword argument ``context`` (a :class:`gradleak.ClientContext`: the case's forward and loss plus the
private batch, which never leaves the client); without it they raise a ``UsageError`` naming what is missing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..components import ClientContext, Detector
from ..errors import UsageError


def _need(context: ClientContext | None, who: str) -> ClientContext:
    if context is None:
        raise UsageError(f"detector '{who}' tests the model on the client's batch: pass score(model, reference, "
                         "context=ClientContext(...))")
    return context


def _loss(model: nn.Module, context: ClientContext) -> torch.Tensor:
    return context.case.loss(context.case.forward(model, context.batch), context.batch.labels)


class LossJump(Detector):
    """Loss jump: the received model's loss on the client's batch against the reference model's.

    A malicious last layer (fishing: logits of 1000) or a planted module changes the loss far beyond what one
    honest round does. Score: |ln(L_received / L_reference)|; without a reference the baseline is ln(K), the
    loss of an uninformed K-class classifier.
    """

    name = "loss-jump"
    threshold = 1.5  # honest LeNet rounds (U(-0.5, 0.5) init) reach 1.0 between two initialisations
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    def score(self, model: nn.Module, reference: nn.Module | None = None, *,
              context: ClientContext | None = None, **_: Any) -> float:
        ctx = _need(context, self.name)
        with torch.no_grad():
            outputs = ctx.case.forward(model, ctx.batch)
            loss = float(ctx.case.loss(outputs, ctx.batch.labels))
            base = float(_loss(reference, ctx)) if reference is not None else math.log(outputs.shape[-1])
        if not math.isfinite(loss):
            return 100.0
        return abs(math.log(max(loss, 1e-12) / max(base, 1e-12)))


def relu_activity(model: nn.Module, context: ClientContext) -> list[torch.Tensor]:
    """For every ``nn.ReLU`` module, the ``(batch, units)`` boolean activity on the client's batch."""
    acts: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: acts.append((out > 0).flatten(1)))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            context.case.forward(model, context.batch)
    finally:
        for h in hooks:
            h.remove()
    return acts


class ActivationSparsity(Detector):
    """Per-sample activation sparsity: units that fire for exactly one sample of the batch.

    Trap weights and imprint bins make ReLU units fire for one sample only (that is what leaks it). For a
    layer with firing rate p over units and samples, independent units give a fraction
    E = n p (1-p)^(n-1) / (1 - (1-p)^n) of single-sample units among the units that fire; the score is the
    largest excess (observed - E) over ReLU layers of the received model (0 to 1). Models without
    ``nn.ReLU`` modules score 0.
    """

    name = "activation-sparsity"
    threshold = 0.25
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    def score(self, model: nn.Module, reference: nn.Module | None = None, *,
              context: ClientContext | None = None, **_: Any) -> float:
        ctx = _need(context, self.name)
        worst = 0.0
        for act in relu_activity(model, ctx):
            n = act.shape[0]
            if n < 2:
                continue
            counts = act.sum(0)
            firing = counts > 0
            if not bool(firing.any()):
                continue
            p = float(act.double().mean())
            expected = n * p * (1 - p) ** (n - 1) / (1 - (1 - p) ** n) if 0 < p < 1 else 0.0
            observed = float((counts[firing] == 1).double().mean())
            worst = max(worst, observed - expected)
        return worst


class GradientConcentration(Detector):
    """Gradient mass concentration: the share of a layer's gradient held by its top 1% of units.

    An honest layer spreads its gradient over many units; a planted layer concentrates it in the few units
    that isolate single samples (trap weights), and a fished last layer routes the whole body gradient
    through one sample. Score: the largest, over weight matrices with at least 16 rows, of the fraction of
    squared gradient norm in the top ceil(1%) rows, minus the same statistic of the reference model on the
    same batch (the reference's alone when the architectures differ; 0 to 1).
    """

    name = "gradient-concentration"
    threshold = 0.75  # honest LeNet rounds reach 0.57
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    @staticmethod
    def _top_share(model: nn.Module, context: ClientContext) -> float:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and p.shape[0] >= 16]
        if not params:
            return 0.0
        grads = torch.autograd.grad(_loss(model, context), [p for _, p in params], allow_unused=True)
        worst = 0.0
        for g in grads:
            if g is None:
                continue
            rows = g.detach().double().flatten(1).pow(2).sum(1)
            total = float(rows.sum())
            if total <= 0:
                continue
            k = max(1, math.ceil(0.01 * len(rows)))
            worst = max(worst, float(rows.topk(k).values.sum()) / total)
        return worst

    def score(self, model: nn.Module, reference: nn.Module | None = None, *,
              context: ClientContext | None = None, **_: Any) -> float:
        ctx = _need(context, self.name)
        share = self._top_share(model, ctx)
        base = self._top_share(reference, ctx) if reference is not None else 0.0
        return max(0.0, share - base)
