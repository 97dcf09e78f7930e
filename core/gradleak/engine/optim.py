"""Optimizers for batched restarts: every restart is optimised independently inside one computation.

Adam and SGD are elementwise, so torch's own implementations already treat restarts independently. L-BFGS
is not (its inner products would couple restarts), so :class:`BatchedLBFGS` keeps one curvature history
per restart. It follows ``torch.optim.LBFGS`` without line search (the DLG setting: ``lr=1``, up to
``max_iter=20`` inner iterations per step, history 100, first step scaled by ``min(1, 1/|g|_1)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Closure = Callable[[], torch.Tensor]  # recomputes the objective per restart, shape (R,), and fills .grad


def _rdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(1)


class BatchedLBFGS:
    """L-BFGS with one curvature history and one step size per restart.

    With ``line_search=False`` this is ``torch.optim.LBFGS`` without line search (DLG's setting), batched.
    With ``line_search=True`` (our default for DLG) each inner iteration backtracks per restart (Armijo
    condition ``f(x + t d) <= f(x) + 1e-4 t g.d``, halving ``t`` up to 10 times; a restart with no acceptable
    step keeps its point). The fixed step of the original makes sigmoid networks' inputs explode on some
    images (the divergence the DLG literature reports); backtracking removes that without changing the
    fixed point.
    """

    def __init__(self, params: list[torch.Tensor], restarts: int, lr: float = 1.0, max_iter: int = 20,
                 history_size: int = 100, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 line_search: bool = True) -> None:
        self.params = params
        self.R = restarts
        self.lr = lr
        self.max_iter = max_iter
        self.history_size = history_size
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.line_search = line_search
        self.s: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []
        self.rho: list[torch.Tensor] = []  # 1/ys, zero where a pair was rejected for that restart
        self.d: torch.Tensor | None = None
        self.t: torch.Tensor | None = None
        self.prev_g: torch.Tensor | None = None
        self.h_diag: torch.Tensor | None = None
        # Restarts the engine has given up on; per-step convergence is tracked inside step().
        self.enabled = torch.ones(restarts, dtype=torch.bool, device=params[0].device)
        self.n_iter = 0

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(self.R, -1)
                          for p in self.params], 1)

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(self.R, -1) for p in self.params], 1)

    def _set(self, flat: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.params:
                n = p[0].numel()
                p.copy_(flat[:, offset:offset + n].view_as(p))
                offset += n

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        if self.d is None:
            self.h_diag = torch.ones(self.R, device=g.device, dtype=g.dtype)
            return -g
        assert self.prev_g is not None and self.t is not None and self.h_diag is not None
        y = g - self.prev_g
        s = self.d * self.t[:, None]
        ys = _rdot(y, s)
        accept = ys > 1e-10
        if bool(accept.any()):
            if len(self.s) == self.history_size:
                self.s.pop(0), self.y.pop(0), self.rho.pop(0)
            self.s.append(s)
            self.y.append(y)
            self.rho.append(torch.where(accept, 1.0 / ys.clamp_min(1e-10), torch.zeros_like(ys)))
            self.h_diag = torch.where(accept, ys / _rdot(y, y).clamp_min(1e-30), self.h_diag)
        q = -g
        alphas = []
        for s_i, y_i, rho_i in zip(reversed(self.s), reversed(self.y), reversed(self.rho)):
            a_i = _rdot(s_i, q) * rho_i
            q = q - a_i[:, None] * y_i
            alphas.append(a_i)
        r = q * self.h_diag[:, None]
        for (s_i, y_i, rho_i), a_i in zip(zip(self.s, self.y, self.rho), reversed(alphas)):
            b_i = _rdot(y_i, r) * rho_i
            r = r + s_i * (a_i - b_i)[:, None]
        return r

    def step(self, closure: Closure) -> torch.Tensor:
        """One optimizer step (up to ``max_iter`` inner iterations); returns the objective per restart."""
        with torch.enable_grad():
            loss = closure().detach()
        g = self._flat_grad()
        active = self.enabled & (g.abs().amax(1) > self.tolerance_grad)
        for inner in range(self.max_iter):
            if not bool(active.any()):
                break
            self.n_iter += 1
            self.d = self._direction(g)
            self.prev_g = g.clone()
            if self.n_iter == 1:
                t = torch.clamp(1.0 / g.abs().sum(1), max=1.0) * self.lr
            else:
                t = torch.full((self.R,), self.lr, device=g.device, dtype=g.dtype)
            gtd = _rdot(g, self.d)
            active &= gtd <= -self.tolerance_change
            t = torch.where(active, t, torch.zeros_like(t))
            x0, f0 = self._flat(), loss
            for _ in range(10 if self.line_search else 1):
                self._set(x0 + self.d * t[:, None])
                with torch.enable_grad():
                    loss = closure().detach()
                g = self._flat_grad()
                ok = ~active | (torch.isfinite(loss) & (loss <= f0 + 1e-4 * t * gtd))
                if not self.line_search or bool(ok.all()):
                    break
                t = torch.where(ok, t, t * 0.5)
            if self.line_search:
                failed = ~ok
                t = torch.where(failed, torch.zeros_like(t), t)
                if bool(failed.any()):
                    self._set(torch.where(failed[:, None], x0, self._flat()))
                    loss = torch.where(failed, f0, loss)
                    g = torch.where(failed[:, None], self.prev_g, g)
                    active &= ~failed
            self.t = t
            still = g.abs().amax(1) > self.tolerance_grad
            still &= (self.d * t[:, None]).abs().amax(1) > self.tolerance_change
            still &= (loss - f0).abs() >= self.tolerance_change
            active &= still
        return loss

def step_schedule(iterations: int) -> Callable[[int], float]:
    """Geiping et al.'s decay: multiply the step size by 0.1 at 3/8, 5/8 and 7/8 of the iterations."""
    milestones = [math.floor(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    return lambda it: 0.1 ** sum(it >= m for m in milestones)


def cosine_schedule(iterations: int) -> Callable[[int], float]:
    return lambda it: 0.5 * (1 + math.cos(math.pi * min(it, iterations) / max(iterations, 1)))
