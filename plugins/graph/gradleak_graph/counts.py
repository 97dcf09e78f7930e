"""How often each 2-hop building block occurs in the client's graph, read off the readout gradient.

An addition to GRAIN (Drencheva et al., ICLR 2025), whose assembly search ranks complete graphs by gradient
distance only. With mean pooling of per-node logits, the gradient of the readout's first weight is

    dL/dW0 = sum_i (1/n) J(r_i)^T v r_i^T,     v = p - e_y = dL/d(last bias),

where ``r_i = [x_i, h2_i]`` is node ``i``'s readout input (a function of its 2-hop block) and ``J(r)`` the
Jacobian of the readout MLP after its first linear layer, also a function of ``r`` alone. Once the 2-hop stage
has listed the candidate rows ``r_t``, this is linear in the shares ``q_t = m_t / n`` (``m_t`` nodes of 2-hop
type ``t`` among ``n``): a least-squares fit of ``dL/dW0`` by the rank-1 terms ``w_t r_t^T``, ``w_t = J(r_t)^T
v``, recovers them exactly when the terms are independent (they are for generic weights), and the last bias
gives ``v`` with the update's own scale, so ``sum_t q_t = 1`` serves as a check. The smallest ``n`` making
every ``q_t n`` an integer is the node count (graphs made of ``k`` copies of the same shares, such as covers,
give the same gradient and are searched at ``k n``). The assembly then places exactly ``m_t`` nodes of each
type instead of enumerating graphs blindly. Only for graph classification with mean pooling; when the fit is
not exact (another model, a defense's noise) the shares are not used and the paper's search runs alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

Key = tuple[int, tuple[int, ...]]  # (1-hop block, sorted 1-hop blocks of the neighbours)


@dataclass(frozen=True)
class Shares:
    """Each 2-hop key's group (keys with identical readout rows share one), the groups' shares and ``n_min``."""

    group: dict[Key, int]
    share: tuple[float, ...]
    n_min: int

    def counts(self, n: int) -> list[int]:
        """Nodes of each group in a graph of ``n`` nodes."""
        return [round(q * n) for q in self.share]

    def present(self, key: Key) -> bool:
        g = self.group.get(key)
        return g is not None and round(self.share[g] * self.n_min) > 0


def two_hop_shares(model: torch.nn.Module, rows: dict[Key, torch.Tensor], grad_w0: torch.Tensor,
                   grad_last_bias: torch.Tensor | None, max_nodes: int, max_rows: int = 4000,
                   fit_tol: float = 1e-4) -> Shares | None:
    """The shares of the candidate 2-hop rows in the gradient, or None when they cannot be read exactly."""
    if grad_last_bias is None or not rows or len(rows) > max_rows or getattr(model, "task", "graph") != "graph":
        return None
    keys = list(rows)
    r = torch.stack([rows[k] for k in keys]).double()
    group, unique = _group_identical(r)
    u = r[unique]
    readout = model.readout
    first = readout[0]
    with torch.enable_grad():
        z = torch.nn.functional.linear(u, first.weight.double(), first.bias.double()).detach().requires_grad_(True)
        out = z
        for layer in list(readout)[1:]:
            out = torch.nn.functional.linear(out, layer.weight.double(), layer.bias.double()) \
                if isinstance(layer, torch.nn.Linear) else layer(out)
        (w,) = torch.autograd.grad((out @ grad_last_bias.double().to(out.device)).sum(), z)
    g3 = grad_w0.double().to(u.device)
    gram = (w @ w.T) * (u @ u.T)
    rhs = ((w @ g3) * u).sum(1)
    q = torch.linalg.lstsq(gram.cpu(), rhs.cpu()[:, None], driver="gelsd").solution[:, 0].to(u.device)
    fit = float((g3 - (w.T * q) @ u).norm() / g3.norm().clamp_min(1e-30))
    total = float(q.sum())
    if not fit < fit_tol or abs(total - 1.0) > 1e-3:
        log.info("2-hop shares not used: fit %.1e, sum of shares %.4f", fit, total)
        return None
    n_min = next((n for n in range(1, max_nodes + 1)
                  if float((q * n - (q * n).round()).abs().max()) < 0.05), None)
    if n_min is None or float((q * n_min).round().min()) < 0:
        log.info("2-hop shares not used: no node count up to %d makes them integral", max_nodes)
        return None
    return Shares({k: int(group[i]) for i, k in enumerate(keys)}, tuple(q.tolist()), n_min)


def _group_identical(r: torch.Tensor, tol: float = 1e-5) -> tuple[list[int], list[int]]:
    """Group index of each row and one representative per group: rows equal up to ``tol`` relative to the
    largest row (float32 rounding of the same embedding reached through different blocks) share a group."""
    scale = r.norm(dim=1).max().clamp_min(1e-30)
    dist = torch.cdist(r, r) / scale
    group = [-1] * len(r)
    unique: list[int] = []
    for i in range(len(r)):
        if group[i] >= 0:
            continue
        group[i] = len(unique)
        for j in torch.nonzero(dist[i] < tol).flatten().tolist():
            if group[j] < 0:
                group[j] = len(unique)
        unique.append(i)
    return group, unique
