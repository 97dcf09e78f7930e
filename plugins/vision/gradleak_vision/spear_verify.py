"""SPEAR's checks of a selection of directions, and its completion from the next layer.

A selection Q (b directions) is solved into the batch (:func:`solve`) and scored by the paper's
sparsity-matching coefficient (:func:`matching`). When one sample's ReLU zero set lies inside another's, the
first layer alone cannot pin that sample's direction; :func:`complete` then fixes the batch from the next
linear layer's gradient (our extension, documented there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from gradleak import Update

from .exact import InputLayer, leaves

if TYPE_CHECKING:
    from .spear import SpearConfig

#: A completed batch is accepted only when every sample's next-layer input lies this close (relative) to the
#: row space of the next layer's weight gradient; the true batch sits at ~3e-7 (float32 gradients), a wrong
#: completion at >= 9e-3 in our runs.
SPAN_TOL = 1e-4


def solve(L: torch.Tensor, R: torch.Tensor, db: torch.Tensor, Q: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Scales from dL/db = L Q c (least squares), then dL/dZ^T = L Q diag(c) and X = (Q diag(c))^{-1} R; None
    when a scale vanishes."""
    scales = torch.linalg.lstsq(L @ Q, db[:, None]).solution.flatten()
    if bool((scales.abs() < 1e-12 * scales.abs().max()).any()):
        return None
    return L @ (Q * scales), torch.linalg.solve(Q * scales, R)


def accepted(c: SpearConfig, m: int, b: int) -> float:
    """The lowest score a selection is accepted with: at most ``slack`` of the ``m * b`` pairs mismatched."""
    return 1.0 - (c.slack + 0.5) / (m * b)


def gradient_zeros(dZt: torch.Tensor, zero_tol: float) -> torch.Tensor:
    """Entries of ``dL/dZ^T`` (units x samples) below ``zero_tol`` of their sample's largest: the ReLU's zeros."""
    return dZt.abs() < zero_tol * dZt.abs().amax(0, keepdim=True)


def matching(dZt: torch.Tensor, X: torch.Tensor, W: torch.Tensor, bias: torch.Tensor, zero_tol: float) -> float:
    """The sparsity-matching coefficient: the fraction of (unit, sample) pairs where the recovered batch's
    pre-activation ``W x + b`` is <= 0 exactly where the gradient's entry ``dL/dZ`` is zero, minus 1 when a
    unit with a non-zero gradient is inactive for the recovered batch (beyond float error).

    The two kinds of mismatch differ: an active unit may get a zero gradient by chance (its downstream
    gradient cancels to ~1e-7 of the largest; we saw one in 660 pairs at b = 4), but ReLU never passes a
    gradient to an inactive unit, so the true batch has none of the second kind while a wrong direction
    produces many. The penalty keeps every selection with such a unit below every selection without."""
    zero = gradient_zeros(dZt, zero_tol)
    Z = (X @ W.T + bias).T
    coeff = float((zero == (Z <= 0)).double().mean())
    impossible = bool((~zero & (Z < -1e-6 * Z.abs().amax(0, keepdim=True))).any())
    return coeff - 1.0 if impossible else coeff


@dataclass(frozen=True)
class NextLayer:
    """What the completion reads: the first layer's weight and bias (every unit) and an orthonormal basis
    (b x width) of the row space of the next linear layer's weight gradient, which holds every sample's
    input to that layer."""

    weight: torch.Tensor
    bias: torch.Tensor
    basis: torch.Tensor

    @classmethod
    def find(cls, model: nn.Module, layer: InputLayer, update: Update, b: int, rank_tol: float
             ) -> NextLayer | None:
        """The next layer when the model runs ``Linear -> ReLU -> Linear`` from the input and that layer's
        gradient has rank b; None otherwise (the completion is then not tried)."""
        chain = leaves(model)
        names = [n for n, _ in chain]
        i = names.index(layer.name)
        if i + 2 >= len(chain) or not isinstance(chain[i + 1][1], nn.ReLU):
            return None
        name, nxt = chain[i + 2]
        grad = update.tensors.get(f"{name}.weight")
        if not isinstance(nxt, nn.Linear) or nxt.in_features != layer.module.out_features or grad is None:
            return None
        grad = grad.detach().double() * (-1.0 if update.kind == "delta" else 1.0)
        _, S, Vh = torch.linalg.svd(grad, full_matrices=False)
        if len(S) < b or float(S[b - 1]) <= rank_tol * float(S[0]):
            return None
        return cls(layer.module.weight.detach().to(grad), layer.module.bias.detach().to(grad), Vh[:b])

    def off_span(self, H: torch.Tensor) -> torch.Tensor:
        """The rows of ``H`` minus their projection on the row space."""
        return H - (H @ self.basis.T) @ self.basis

    def holds(self, X: torch.Tensor) -> bool:
        """Whether every input's hidden activation ReLU(W x + b) lies in the row space (:data:`SPAN_TOL`)."""
        H = torch.relu(X @ self.weight.T + self.bias)
        return bool((self.off_span(H).norm(dim=1) <= SPAN_TOL * H.norm(dim=1)).all())


def complete(X: torch.Tensor, dZt: torch.Tensor, alive: torch.Tensor, nxt: NextLayer, zero_tol: float
             ) -> tuple[torch.Tensor, int] | None:
    """The batch when the selection behind ``X`` holds b-1 true directions and one wrong one; None otherwise.

    Our extension to SPEAR. When sample i's zero set lies inside sample j's, every row of L that vanishes on
    q_i also vanishes on q_j, so no draw pins q_i: the search ends with the other b-1 columns and some wrong
    q' = sum_k a_k q_k in a slot p. Solving with it gives x_p = x_i exactly (the scales fitted to dL/db
    absorb a_i) and, in every other slot, x_k' = (x_k - t x_i) / (1 - t) with t = a_k / a_i: the true input is
    on the line x_k(t) = (1 - t) x_k' + t x_p. Along it the pre-activation is affine, z_k(t) = (1 - t) z_k' +
    t z_p, and the units active for sample k are the non-zeros of its (true) gradient column, so the input of
    the next linear layer, h_k(t) = A_k z_k(t), is affine in t. That layer's weight gradient G^T H has every
    h_k in its b-dimensional row space, so t is the least-squares root of dist(h_k(t), row space), in closed
    form. Each slot is tried as p; a completion is returned only when every sample's ReLU(W x + b) lies in
    the row space (:data:`SPAN_TOL`); the caller still re-scores it by sparsity matching. One nested pair
    leaves one wrong direction; two leave a plane per sample, which this does not resolve.
    """
    b = len(X)
    active = torch.zeros((b, len(alive)), dtype=torch.bool, device=X.device)
    active[:, alive] = ~gradient_zeros(dZt, zero_tol).T
    Z = X @ nxt.weight.T + nxt.bias
    base = nxt.off_span(active * Z)
    for p in range(b):
        step = nxt.off_span(active * (Z[p] - Z))
        t = -(base * step).sum(1) / (step * step).sum(1).clamp_min(torch.finfo(X.dtype).tiny)
        t[p] = 0.0
        Xn = X + t[:, None] * (X[p] - X)
        if nxt.holds(Xn):
            return Xn, p
    return None
