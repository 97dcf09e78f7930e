"""The optimization-attack engine: find inputs whose update matches the observed one.

    x* = argmin_x  D(U(x, y), U_obs) + sum_j w_j R_j(x)

``U`` is the client's update as a function of candidate inputs (a gradient, or an unrolled FedAvg delta;
see :mod:`gradleak.engine.functional`), ``D`` a matching objective (:mod:`gradleak.engine.objectives`),
``R_j`` priors with weights. All ``restarts`` are optimised at once as one batched computation; the restart
with the lowest final matching objective is returned. Labels are either given (known or recovered
beforehand) or optimised jointly as soft labels ``softmax(l)`` (DLG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch

from ..components import Prior
from ..errors import DataError
from ..types import Reconstruction, Update
from ..view import AttackerView
from .functional import CandidateUpdate
from .objectives import masked
from .objectives import objective as make_objective
from .optim import BatchedLBFGS, cosine_schedule, step_schedule


@dataclass(frozen=True)
class InversionSettings:
    """How to run the optimization (the attack's Config maps onto this)."""

    objective: Literal["l2", "cosine", "tag"] = "l2"
    tag_alpha: float = 0.01
    optimizer: Literal["adam", "lbfgs", "sgd"] = "adam"
    lr: float = 0.1
    iterations: int = 1000
    schedule: Literal["none", "step", "cosine"] = "none"
    signed: bool = False
    boxed: bool = True
    restarts: int = 1
    lbfgs_inner: int = 20
    line_search: bool = True
    init_mean: float = 0.0
    init_std: float = 1.0

    @classmethod
    def from_config(cls, config: Any, budget: int | None = None, **fixed: Any) -> InversionSettings:
        """The settings an attack's ``Config`` dataclass holds (its fields named as fields here), the run's
        ``budget`` as ``iterations`` when given, and what the attack fixes (``fixed``) over both.

        ``InversionSettings.from_config(config, budget, objective="cosine", optimizer="adam")`` is Inverting
        Gradients: ``lr``, ``iterations``, ``restarts``, ``schedule``, ... come from its Config.
        """
        own = {f.name for f in fields(cls)}
        given = {f.name: getattr(config, f.name) for f in fields(config) if f.name in own}
        if budget:
            given["iterations"] = budget
        return cls(**{**given, **fixed})


def invert(
    view: AttackerView,
    update: Update,
    settings: InversionSettings,
    labels: torch.Tensor | None = None,
    priors: Sequence[tuple[Prior, float]] = (),
) -> Reconstruction:
    """Run the optimization; ``labels`` None means joint soft-label optimization (DLG)."""
    if not update.is_finite():
        raise DataError("the update contains NaN or inf values; the attack cannot match it")
    R, B = settings.restarts, view.batch_size
    space = view.modality.search_space(view, boxed=settings.boxed)
    fn = CandidateUpdate(view, update)
    target = fn.target(update)
    match = make_objective(settings.objective, settings.tag_alpha)
    if update.visible is not None:
        # Part of the update is encrypted: match only what the server reads in the clear.
        masks = [update.visible.get(n) for n in fn.names]
        match = masked(match, [None if m is None else m.to(t.device, t.dtype) for m, t in zip(masks, target)])
    z = space.init(R, B, view.generator)
    if settings.init_mean != 0.0 or settings.init_std != 1.0:
        z = settings.init_mean + settings.init_std * z
    space.project(z)
    z.requires_grad_(True)
    variables = [z]
    joint = labels is None
    if joint:
        if view.num_classes is None:
            raise DataError("joint label optimization needs a classification case (num_classes)")
        logits = torch.randn(R, B, view.num_classes, generator=view.generator, device=z.device, dtype=z.dtype)
        logits.requires_grad_(True)
        variables.append(logits)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        x = space.decode(z)
        y = logits.softmax(-1) if joint else labels
        matching = match(fn(x, y, per_restart_labels=joint), target)
        total = matching
        for prior, weight in priors:
            if weight:
                total = total + weight * prior.penalty(x, view)
        return matching, total

    def closure() -> torch.Tensor:
        for v in variables:
            v.grad = None
        matching, total = evaluate()
        # A restart that diverged must not poison the others through the shared backward pass.
        finite = torch.isfinite(total)
        torch.where(finite, total, torch.zeros_like(total)).sum().backward()
        for v in variables:
            if v.grad is not None:
                # torch.where, not a masked assignment: boolean indexing waits for the device (nonzero).
                v.grad.copy_(torch.where(per_restart(finite, v.grad), v.grad, 0.0))
                if settings.signed:
                    v.grad.sign_()
        return torch.where(finite, total, torch.full_like(total, float("inf")))

    lr_at = {"none": lambda it: 1.0, "step": step_schedule(settings.iterations),
             "cosine": cosine_schedule(settings.iterations)}[settings.schedule]
    if settings.optimizer == "lbfgs":
        opt = BatchedLBFGS(variables, R, lr=settings.lr, max_iter=settings.lbfgs_inner,
                           line_search=settings.line_search)
    elif settings.optimizer == "adam":
        opt = torch.optim.Adam(variables, lr=settings.lr)
    else:
        opt = torch.optim.SGD(variables, lr=settings.lr, momentum=0.9)
    with fn.numerics():  # the chosen precision, backward passes included
        alive = torch.ones(R, dtype=torch.bool, device=z.device)
        last_good = [v.detach().clone() for v in variables]
        for it in range(settings.iterations):
            if isinstance(opt, BatchedLBFGS):
                opt.lr = settings.lr * lr_at(it)
                total = opt.step(closure)
            else:
                for group in opt.param_groups:
                    group["lr"] = settings.lr * lr_at(it)
                total = closure()
                opt.step()
            with torch.no_grad():
                space.project(z)
                current = [v.detach() for v in variables]
                ok = torch.isfinite(total) & torch.stack([torch.isfinite(v.flatten(1)).all(1) for v in current]).all(0)
                for keep, now in zip(last_good, variables):
                    keep.copy_(torch.where(per_restart(ok, now), now, keep))
                    now.copy_(keep)
                alive &= ok
                if isinstance(opt, BatchedLBFGS):
                    opt.enabled &= alive
            # The host reads device values only every 10 iterations (a read waits for the device): a loop whose
            # restarts all diverged runs on for at most 9 iterations, each restoring the last good point.
            if it % 10 == 0 or it == settings.iterations - 1:
                if not bool(alive.any()):
                    break
                if view.progress is not None:
                    view.report(it + 1, settings.iterations, float(torch.where(alive, total, torch.inf).min()))
        with torch.no_grad():
            for v, keep in zip(variables, last_good):
                v.copy_(keep)
        with torch.enable_grad():
            matching, _ = evaluate()
    matching = matching.detach()
    matching = torch.where(alive & torch.isfinite(matching), matching, torch.full_like(matching, float("inf")))
    best = int(matching.argmin())
    with torch.no_grad():
        x = space.decode(z)[best].detach()
        y = logits[best].argmax(-1).detach() if joint else labels
    return Reconstruction(
        batch=space.to_batch(x, y),
        objective=float(matching[best]),
        info={"restart_objectives": [float(v) for v in matching], "best_restart": best,
              "iterations": settings.iterations, "diverged_restarts": int((~alive).sum())},
    )


def per_restart(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-restart mask ``(R,)`` shaped to broadcast against ``like`` ``(R, ...)``: ``torch.where`` with it
    replaces masked assignments, which wait for the device (``nonzero``)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))
