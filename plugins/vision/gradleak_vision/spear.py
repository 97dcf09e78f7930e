"""SPEAR: exact batch recovery from the low-rank gradient of a linear layer followed by ReLU."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradleak import (Attack, AttackerView, AttackFailed, Batch, ConfigError, IncompatibleError, Reconstruction,
                      Update, param)

from .exact import images, input_layer, labels_from_inputs, layer_gradients


@dataclass(frozen=True)
class SpearConfig:
    samples: int = param(100_000, "most submatrices sampled (the main budget, --budget)")
    chunk: int = param(4096, "submatrices whose null vectors are computed together")
    tau: float = param(0.1, "a direction is kept when L q has at least tau * m zeros (sparsity filter)")
    zero_tol: float = param(1e-5, "entries below this fraction of the largest count as zeros")
    rank_tol: float = param(1e-6, "singular values below this fraction of the largest are noise (rank)")

    def validate(self, owner: str) -> None:
        for key in ("samples", "chunk"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{owner}: {key} must be >= 1, got {getattr(self, key)}")
        for key in ("tau", "zero_tol", "rank_tol"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"{owner}: {key} must be in (0, 1), got {getattr(self, key)}")


def low_rank_factors(dW: torch.Tensor, b: int, rank_tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``dW = L R`` with ``L`` (m x b) and ``R`` (b x n) from the SVD; raises AttackFailed when rank < b."""
    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)
    rank = int((S > rank_tol * S[0]).sum())
    if rank < b:
        raise AttackFailed("rank", f"the layer's gradient has rank {rank} < batch size {b} (repeated or "
                                   "gradient-free samples); SPEAR needs full rank")
    return U[:, :b] * S[:b], Vh[:b]


def candidate_directions(L: torch.Tensor, c: SpearConfig, total: int, generator: torch.Generator
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Sample ``b-1`` rows of ``L``, take the null vector ``q`` of each submatrix and keep the sparse ``L q``.

    A direction is a column of the disaggregation matrix Q when the sampled rows are zeros of that column of
    dL/dZ, which ReLU makes likely (about half of each column is zero). Returns the distinct unit directions
    (sign fixed by the largest entry of ``L q``), how often each was hit, their numbers of zeros, and the
    submatrices sampled. Sampling stops once the ``b`` directions :func:`greedy_select` would pick were each
    hit twice: a true column recurs, while a spurious sparse direction (from an unlucky subset) rarely does.
    """
    alive = L.norm(dim=1) > c.zero_tol * L.norm(dim=1).max()
    L = L[alive]  # neurons inactive for the whole batch are zero rows: they constrain nothing
    m, b = L.shape
    zeros_needed = max(int(c.tau * m), 2 * b)
    dirs = L.new_zeros((0, b))
    hits = torch.zeros(0, dtype=torch.long, device=L.device)
    zeros = torch.zeros(0, dtype=torch.long, device=L.device)
    done = 0
    while done < total:
        k = min(c.chunk, total - done)
        done += k
        rows = torch.rand((k, m), generator=generator, device=generator.device).argsort(1)[:, : b - 1].to(L.device)
        Vh = torch.linalg.svd(L[rows]).Vh
        q = Vh[:, -1]  # null vector of each (b-1) x b submatrix
        Lq = q @ L.T
        nz = (Lq.abs() < 1e-3 * Lq.abs().amax(1, keepdim=True)).sum(1)  # loose: q is refined below
        # A submatrix of rank < b - 1 (rows shared by the zero sets of two columns) yields an arbitrary mix of
        # columns that is sparse too; it passes the filter but is never drawn twice, hence the hit counts.
        keep = nz >= zeros_needed
        for qi in q[keep]:
            if len(dirs):
                near = (dirs @ qi).abs() > 1 - 1e-6  # a repeat of a known direction: no need to refine it
                if near.any():
                    hits[near.nonzero()[0, 0]] += 1
                    continue
            qi, nzi = _refine(L, qi, c.zero_tol)
            if nzi < zeros_needed:
                continue
            same = (dirs @ qi).abs() > 1 - 1e-9 if len(dirs) else torch.zeros(0, dtype=torch.bool)
            if same.any():
                hits[same.nonzero()[0, 0]] += 1
            else:
                dirs = torch.cat([dirs, qi[None]])
                hits = torch.cat([hits, hits.new_ones(1)])
                zeros = torch.cat([zeros, zeros.new_full((1,), nzi)])
        if len(dirs) >= b and bool((hits[_greedy_order(dirs, hits, zeros, b)] >= 2).all()):
            break
    return dirs, hits, zeros, done


def _refine(L: torch.Tensor, q: torch.Tensor, zero_tol: float) -> tuple[torch.Tensor, int]:
    """Re-fit ``q`` as the null vector of every row where ``L q`` is (nearly) zero, not only the b-1 sampled
    ones: an ill-conditioned submatrix gives a noisy null vector, the whole zero set an exact one."""
    Lq = L @ q
    rows = Lq.abs() < 1e-3 * Lq.abs().max()
    if int(rows.sum()) < L.shape[1] - 1:
        return q, 0
    _, S, Vh = torch.linalg.svd(L[rows])
    if len(S) < L.shape[1] or S[-2] < 1e3 * S[-1] or S[-2] < 1e-6 * S[0]:
        # The zero set leaves a null space of dimension >= 2: rows where two samples are both inactive. Its
        # vectors mix columns and can be sparser than a true column; they are not columns of Q.
        return q, 0
    q = Vh[-1]
    Lq = L @ q
    q = q * torch.sign(Lq[Lq.abs().argmax()])
    return q, int((Lq.abs() < zero_tol * Lq.abs().max()).sum())


def _greedy_order(q: torch.Tensor, hits: torch.Tensor, zeros: torch.Tensor, b: int) -> list[int]:
    chosen: list[int] = []
    key = zeros * (int(hits.max()) + 1) + hits  # sparsest first; hits break ties
    for i in key.argsort(descending=True, stable=True).tolist():
        if not chosen or int(torch.linalg.matrix_rank(q[[*chosen, i]], rtol=1e-6)) == len(chosen) + 1:
            chosen.append(i)
            if len(chosen) == b:
                break
    return chosen


def greedy_select(q: torch.Tensor, hits: torch.Tensor, zeros: torch.Tensor, b: int) -> torch.Tensor:
    """Up to ``b`` directions, sparsest first (the paper's greedy choice), each adding a new dimension."""
    order = _greedy_order(q, hits, zeros, b)
    return q[order].T if order else q.new_zeros((q.shape[1], 0))


class Spear(Attack):
    """SPEAR: exact recovery of a whole batch from a linear layer followed by ReLU.

    Dimitrov, Baader, Mueller, Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated Learning",
    NeurIPS 2024. dL/dW = (dL/dZ)^T X has rank b; its SVD gives dL/dW = L R and a disaggregation matrix Q
    with (dL/dZ)^T = L Q, X = Q^{-1} R. ReLU zeroes about half of each column of dL/dZ, so the null vector of
    b-1 sampled rows of L is a column of Q when those rows are zeros of one column: sample, keep the
    directions whose L q has at least ``tau * m`` zeros, select b greedily by sparsity, fix the scales from
    dL/db = L Q 1 (least squares), and X = diag(1/c) Q^{-1} R. We sample in chunks until b independent
    directions are found (the paper samples a fixed pool); a batch where fewer appear within ``samples``
    fails with reason ``budget``. Needs the input layer of an FC ReLU network (``vision/mlp``); labels come
    from the last layer once the inputs are known. Computed in float64.
    """

    name = "spear"
    modalities = frozenset({"image"})
    Config = SpearConfig
    paper = "Dimitrov et al., SPEAR: Exact Gradient Inversion of Batches in Federated Learning, NeurIPS 2024"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        layer = input_layer(view.model, view.sample_shape, f"attack '{self.name}'")
        if not isinstance(layer.after, nn.ReLU):
            after = type(layer.after).__name__ if layer.after is not None else "nothing"
            raise IncompatibleError(f"attack 'spear' needs a linear layer followed by ReLU (it reads the ReLU's "
                                    f"zeros in the gradient); layer '{layer.name}' is followed by {after}; use "
                                    "a ReLU network such as vision/mlp with activation=relu")
        dW, db = layer_gradients(update, layer.name)
        b = view.batch_size
        L, R = low_rank_factors(dW, b, c.rank_tol)
        if b == 1:
            Q = torch.ones((1, 1), dtype=L.dtype, device=L.device)
            tried = 0
        else:
            gen = torch.Generator(device=view.generator.device)
            gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=view.generator, device=view.generator.device)))
            q, hits, zeros, tried = candidate_directions(L, c, budget or c.samples, gen)
            Q = greedy_select(q, hits, zeros, b)
            if Q.shape[1] < b:
                raise AttackFailed("budget", f"found {Q.shape[1]} of {b} sparse directions in {tried} samples; "
                                             "raise --budget")
        scales = torch.linalg.lstsq(L @ Q, db[:, None]).solution.flatten()
        if bool((scales.abs() < 1e-12 * scales.abs().max()).any()):
            raise AttackFailed("scale", "a sample's bias gradient vanishes; its scale cannot be recovered")
        X = torch.linalg.solve(Q * scales, R)  # (Q diag(c))^{-1} R
        self._verify(layer.module, X, L @ (Q * scales))
        data = images(X, view)
        labels = labels_from_inputs(view, update, data)
        residual = float((L @ (Q * scales) @ X - dW).norm() / dW.norm())
        return Reconstruction(Batch(data, labels, "image"),
                              info={"layer": layer.name, "samples": tried, "residual": residual})

    @staticmethod
    def _verify(module: nn.Linear, X: torch.Tensor, dZt: torch.Tensor) -> None:
        """ReLU consistency: a unit with a non-zero gradient for a sample must be active for it (z > 0) in the
        recovered batch; a wrong direction breaks this for many units, so the batch fails instead."""
        Z = X @ module.weight.detach().double().T + module.bias.detach().double()
        active = dZt.T.abs() > 1e-6 * dZt.abs().max()
        wrong = float((active & (Z < -1e-6 * Z.abs().max())).double().sum() / active.sum().clamp_min(1))
        if wrong > 0.01:
            raise AttackFailed("verification", f"{wrong:.0%} of the active units would be inactive for the "
                                               "recovered batch: a wrong direction was selected; raise --budget")
