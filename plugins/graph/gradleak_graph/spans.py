"""The span test shared by GRAIN (and DAGER/SPEAR): is a vector in the row space of a layer's input?

For a linear map ``Z = H W^T`` the weight gradient is ``dL/dW = (dL/dZ)^T H``; when ``dL/dZ`` has full row rank
(fewer rows than the layer width) its row space is exactly the span of the rows of ``H``. GRAIN's
``utils/misc.py`` takes the top singular vectors of the gradient up to its numerical rank, normalises a
candidate ``v`` and accepts it when the projection residual is below ``10^-3``; we do the same with the L2
norm of the residual, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    """An orthonormal basis ``(rank, dim)`` of a gradient's row space and the gradient's shape."""

    basis: torch.Tensor
    rows: int
    dim: int

    @classmethod
    def of(cls, grad: torch.Tensor, rank_tol: float) -> Span:
        """The row space of ``grad`` (``(out, in)``), keeping singular values above ``rank_tol * s_max``."""
        g = grad.detach().double()
        if g.abs().max() == 0:
            return cls(g.new_zeros((0, g.shape[1])), g.shape[0], g.shape[1])
        _, s, vh = torch.linalg.svd(g, full_matrices=False)
        rank = int((s > s[0] * rank_tol).sum())
        return cls(vh[:rank], g.shape[0], g.shape[1])

    @property
    def rank(self) -> int:
        return int(self.basis.shape[0])

    @property
    def saturated(self) -> bool:
        """True when the test cannot discriminate: the rank reaches the layer's width or its input size."""
        return self.rank >= min(self.rows, self.dim)

    def distance(self, v: torch.Tensor) -> torch.Tensor:
        """L2 residual of each normalised row of ``v`` after projection onto the span; zero rows get 1."""
        v = v.detach().double().to(self.basis.device)
        norm = v.norm(dim=-1, keepdim=True)
        u = v / norm.clamp_min(1e-30)
        residual = u - (u @ self.basis.T) @ self.basis
        out = residual.norm(dim=-1)
        return torch.where(norm.squeeze(-1) > 0, out, torch.ones_like(out))

    def contains(self, v: torch.Tensor, tol: float) -> torch.Tensor:
        return self.distance(v) < tol
