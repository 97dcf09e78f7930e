"""SPEAR: exact batch recovery from the low-rank gradient of a linear layer followed by ReLU."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from gradleak import (Attack, AttackerView, AttackFailed, Batch, ConfigError, IncompatibleError, Reconstruction,
                      Update, param)
from gradleak.config import require_count

from .exact import images, input_layer, labels_from_inputs, layer_gradients
from .spear_verify import NextLayer, accepted, complete, matching, solve

__all__ = ["Spear", "SpearConfig", "accepted", "low_rank_factors", "matching", "search", "solve"]


@dataclass(frozen=True)
class SpearConfig:
    samples: int = param(400_000, "most draws of rows (the main budget, --budget)")
    chunk: int = param(4096, "submatrices whose null vectors are computed together")
    tau: float = param(0.05, "a direction is kept when L q has at least tau * m zeros, m the units active for "
                             "some sample (sparsity filter)")
    zero_tol: float = param(1e-5, "entries of L q below this fraction of the largest count as zeros")
    rank_tol: float = param(1e-6, "singular values of dL/dW below this fraction of the largest are noise (rank)")
    cond_tol: float = param(1e-5, "a sampled submatrix has rank b-1 when its smallest singular value is above "
                                  "this fraction of its largest")
    complete: bool = param(True, "draw b-2 rows and complete them with every other row at once (the same "
                                 "submatrices, far fewer draws); False: SPEAR's plain draws of b-1 rows")
    slack: int = param(1, "units with a zero gradient that the recovered batch may leave active (a downstream "
                          "gradient cancelling by chance); a selection with more is refused")
    next_layer: bool = param(True, "check selections against the next layer's gradient and complete one "
                                   "direction the first layer leaves free (nested activation patterns); False: "
                                   "the first layer alone, as in the paper")

    def validate(self, owner: str) -> None:
        require_count(self, owner, "samples", "chunk")
        for key in ("tau", "zero_tol", "rank_tol", "cond_tol"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"{owner}: {key} must be in (0, 1), got {getattr(self, key)}")
        if self.slack < 0:
            raise ConfigError(f"{owner}: slack must be >= 0, got {self.slack}")


def low_rank_factors(dW: torch.Tensor, b: int, rank_tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``dW = L R`` with ``L`` (m x b) and ``R`` (b x n) from the SVD; raises AttackFailed when rank < b."""
    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)
    rank = int((S > rank_tol * S[0]).sum())
    if rank < b:
        raise AttackFailed("rank", f"the layer's gradient has rank {rank} < batch size {b} (repeated or "
                                   "gradient-free samples); SPEAR needs full rank")
    return U[:, :b] * S[:b], Vh[:b]


def count_zeros(Lq: torch.Tensor, zero_tol: float) -> torch.Tensor:
    """Zeros of each row of ``Lq`` (one direction per row), relative to its largest entry."""
    return (Lq.abs() < zero_tol * Lq.abs().amax(-1, keepdim=True)).sum(-1)


@dataclass
class Candidates:
    """The distinct sparse directions found so far (unit rows of ``dirs``, sign fixed by the largest entry of
    ``L q``), how often each was drawn and its number of zeros."""

    dirs: torch.Tensor
    hits: torch.Tensor
    zeros: torch.Tensor

    @classmethod
    def empty(cls, b: int, like: torch.Tensor) -> Candidates:
        none = torch.zeros(0, dtype=torch.long, device=like.device)
        return cls(like.new_zeros((0, b)), none, none.clone())

    def count_known(self, q: torch.Tensor, draws: torch.Tensor, cos: float) -> torch.Tensor:
        """Add the draws of directions already known (|cosine| above ``cos``); returns the unknown ones' mask."""
        if not len(self.dirs) or not len(q):
            return torch.ones(len(q), dtype=torch.bool, device=q.device)
        known = (q @ self.dirs.T).abs() > cos
        self.hits += (known.long() * draws[:, None]).sum(0)
        return ~known.any(1)

    def add(self, q: torch.Tensor, zeros: torch.Tensor, draws: torch.Tensor) -> None:
        """Count draws of known directions and append the new ones (each once)."""
        fresh = self.count_known(q, draws, 1 - 1e-9)
        q, zeros, draws = q[fresh], zeros[fresh], draws[fresh]
        keep: list[int] = []
        for i in range(len(q)):
            same = [j for j in keep if float((q[i] @ q[j]).abs()) > 1 - 1e-9]
            if not same:
                keep.append(i)
        if not keep:
            return
        groups = (q[keep] @ q.T).abs() > 1 - 1e-9  # each new direction with all its repeats in this chunk
        self.dirs = torch.cat([self.dirs, q[keep]])
        self.hits = torch.cat([self.hits, (groups.long() * draws).sum(1)])
        self.zeros = torch.cat([self.zeros, zeros[keep]])


def unique_directions(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct directions among the rows of ``q`` (up to sign, to ~1e-6) and how often each occurs: a draw
    repeats a column many times, and a repeat need not be re-fitted."""
    q = q * torch.sign(q.gather(1, q.abs().argmax(1, keepdim=True)))
    _, inverse, counts = torch.unique(torch.round(q * 1e6), dim=0, return_inverse=True, return_counts=True)
    first = torch.full((len(counts),), len(q), dtype=torch.long, device=q.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(q), device=q.device), "amin")
    return q[first], counts


def refine(L: torch.Tensor, q: torch.Tensor, c: SpearConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-fit each row of ``q`` as the least-squares null vector of every row of ``L`` where ``L q`` is (nearly)
    zero, not only the b-1 sampled ones; returns the directions and their zero counts, the count set to 0 for
    a direction that is not a column of Q.

    A well-conditioned sample gives zeros at the float noise of the gradient, an ill-conditioned one only near
    1e-4: the re-fit walks the threshold down (1e-4, then ``zero_tol``) and keeps a re-fitted vector only when
    it has more zeros at ``zero_tol``, so a small non-zero entry caught by the loose threshold (dL/dZ has
    entries down to ~1e-4 of its largest) never corrupts a direction that was already exact.

    Two tests reject mixtures of columns. The zero set must span b-1 dimensions (a second small eigenvalue of
    its Gram matrix means rows where two samples are both inactive: a 2-dim null space). And no single row of
    the zero set may carry a dimension alone (leverage 1): b-2 rows where samples i and j are both inactive
    plus one more row pin a mix of columns i and j with |Z_i & Z_j| + 1 zeros, which for correlated images is
    nearly as sparse as a true column and, unlike it, differs with every extra row; a true column's zero set
    spans its b-1 dimensions with many rows.
    """
    n0 = count_zeros(q @ L.T, c.zero_tol)
    for t in (1e-4, c.zero_tol):
        Lq = q @ L.T
        M = (Lq.abs() < t * Lq.abs().amax(1, keepdim=True)).to(L.dtype)
        G = torch.einsum("nm,mi,mj->nij", M, L, L)
        refit = torch.linalg.eigh(G).eigenvectors[:, :, 0]
        n1 = count_zeros(refit @ L.T, c.zero_tol)
        better = n1 > n0
        q, n0 = torch.where(better[:, None], refit, q), torch.where(better, n1, n0)
    Lq = q @ L.T
    M = (Lq.abs() < c.zero_tol * Lq.abs().amax(1, keepdim=True)).to(L.dtype)
    G = torch.einsum("nm,mi,mj->nij", M, L, L)
    ev = torch.linalg.eigvalsh(G)
    spans = ev[:, 1] > c.cond_tol**2 * ev[:, -1]
    lev = torch.einsum("mi,nij,mj->nm", L, torch.linalg.pinv(G + q[:, :, None] * q[:, None, :]), L)
    single = ((lev > 1 - 1e-6) & M.bool()).any(1)
    n0 = torch.where(spans & ~single, n0, torch.zeros_like(n0))
    sign = torch.sign(Lq.gather(1, Lq.abs().argmax(1, keepdim=True)))
    return q * sign, n0


def greedy_order(cands: Candidates, b: int) -> list[int]:
    """The paper's greedy choice: the sparsest directions first (hits break ties), each adding a dimension."""
    chosen: list[int] = []
    key = cands.zeros * (int(cands.hits.max()) + 1) + cands.hits
    for i in key.argsort(descending=True, stable=True).tolist():
        if not chosen or int(torch.linalg.matrix_rank(cands.dirs[[*chosen, i]], rtol=1e-6)) == len(chosen) + 1:
            chosen.append(i)
            if len(chosen) == b:
                break
    return chosen


def improve(cands: Candidates, chosen: list[int], score: Callable[[torch.Tensor], float], best: float,
            pool: int) -> tuple[list[int], float]:
    """The paper's second stage: swap a chosen direction for one of the ``pool`` sparsest others drawn at least
    twice (a true column recurs, a mix of columns pinned by accidental zeros rarely does) whenever that raises
    the sparsity-matching coefficient, until no swap does."""
    key = cands.zeros * (int(cands.hits.max()) + 1) + cands.hits
    order = key.argsort(descending=True, stable=True).tolist()
    others = [i for i in order if i not in chosen and int(cands.hits[i]) >= 2][:pool]
    improved = True
    while improved:
        improved = False
        for i in others:
            for pos in range(len(chosen)):
                trial = chosen[:pos] + [i] + chosen[pos + 1:]
                if int(torch.linalg.matrix_rank(cands.dirs[trial], rtol=1e-6)) < len(trial):
                    continue
                s = score(cands.dirs[trial].T)
                if s > best:
                    others = [j for j in others if j != i] + [chosen[pos]]
                    chosen, best, improved = trial, s, True
                    break
            if improved:
                break
    return chosen, best


def plane_directions(L: torch.Tensor, N: torch.Tensor, run: int) -> torch.Tensor:
    """Candidate columns of Q inside planes ``N`` (n x 2 x b): null spaces of b-2 independent rows of L.

    Completing such rows with one more row r gives a (b-1)-row submatrix of SPEAR's kind, whose null vector is
    the direction of the plane orthogonal to ``L_r``. When the b-2 rows are zeros of column k, q_k lies in the
    plane and every further row of Z_k gives it; so do rows of Z_j when the plane is span(q_k, q_j) (rows
    shared by two zero sets, the common case for correlated images). Directions that at least ``run`` rows
    agree on (to 1e-6 rad) are returned: all m completions of a draw are examined at the cost of one.
    """
    w = torch.einsum("mb,nkb->nmk", L, N)  # row r restricted to the plane
    size = w.norm(dim=2)
    theta = torch.remainder(torch.atan2(w[..., 0], -w[..., 1]), math.pi)  # direction orthogonal to w
    theta = torch.where(size > 1e-6 * size.amax(1, keepdim=True), theta, torch.full_like(theta, -1.0))
    ordered, idx = theta.sort(1)
    same = (ordered.diff(dim=1) < 1e-6) & (ordered[:, 1:] >= 0)
    group = torch.cat([torch.zeros_like(same[:, :1]), ~same], 1).long().cumsum(1)  # runs of equal angles
    n, m = group.shape
    flat = group + torch.arange(n, device=L.device)[:, None] * (m + 1)
    counts = torch.bincount(flat.flatten(), minlength=n * (m + 1)).view(n, m + 1)
    big = (counts.gather(1, group) >= run) & (ordered >= 0)
    first = big & torch.cat([torch.ones_like(same[:, :1]), ~same], 1)  # one representative row per run
    s, r = first.nonzero(as_tuple=True)
    coef = w[s, idx[s, r]]  # (k, 2): the representative row in the plane
    perp = torch.stack([-coef[:, 1], coef[:, 0]], 1)
    q = torch.einsum("kc,kcb->kb", perp, N[s])
    return q / q.norm(dim=1, keepdim=True)


def search(L: torch.Tensor, c: SpearConfig, total: int, generator: torch.Generator,
           score: Callable[[torch.Tensor], float]) -> tuple[torch.Tensor, float, int, int]:
    """Draw submatrices of ``L`` and keep the sparse directions ``L q`` of their null vectors; after every chunk
    select b directions and stop once their sparsity-matching score reaches ``match``. With ``complete`` a
    draw is b-2 rows completed by every other row (:func:`plane_directions`); without it, SPEAR's b-1 rows
    (a draw that lost a rank still yields its plane's directions). Returns the best selection (columns), its
    score, the draws made and the number of distinct candidate directions."""
    m, b = L.shape
    zeros_needed = max(math.ceil(c.tau * m), b + 1)
    match = accepted(c, m, b)
    cands = Candidates.empty(b, L)
    best_q, best_s, seen, swept = L.new_zeros((b, 0)), -1.0, 0, 0
    done, drawn = 0, b - 2 if c.complete else b - 1
    if drawn == 0:
        total = 1  # b = 2 completed: every row is a one-row submatrix and the plane the whole space
    while done < total:
        k = min(c.chunk, total - done, 256 << min(done // 256, 8).bit_length())  # small first: easy batches
        done += k
        if drawn == 0:
            q = plane_directions(L, torch.eye(2, dtype=L.dtype, device=L.device)[None], 3)
        else:
            rows = torch.rand((k, m), generator=generator, device=generator.device).topk(drawn, dim=1).indices
            _, S, Vh = torch.linalg.svd(L[rows.to(L.device)])
            # Rows shared by the zero sets of two columns lose a rank: a (b-1)-row submatrix of rank < b-1 has
            # a null space of dimension >= 2, whose last singular vector is a mix of columns, not a column.
            full = S[:, -1] > c.cond_tol * S[:, 0]
            if c.complete:
                q = plane_directions(L, Vh[full][:, -2:], 3)  # b-2 independent rows: a plane
            else:
                q = Vh[:, -1][full]  # null vector of each (b-1) x b submatrix
                if b > 2:
                    plane = ~full & (S[:, -2] > c.cond_tol * S[:, 0])
                    q = torch.cat([q, plane_directions(L, Vh[plane][:, -2:], 3)])
            q = q[count_zeros(q @ L.T, 1e-3) >= zeros_needed]  # loose: q is re-fitted, then counted
        if len(q):
            q, draws = unique_directions(q)
            fresh = cands.count_known(q, draws, 1 - 1e-6)
            q, draws = q[fresh], draws[fresh]
        if len(q):
            q, n = refine(L, q, c)
            ok = n >= zeros_needed
            cands.add(q[ok], n[ok], draws[ok])
        if len(cands.dirs) < b or len(cands.dirs) == seen:
            continue
        seen = len(cands.dirs)
        chosen = greedy_order(cands, b)
        if len(chosen) < b:
            continue
        s = score(cands.dirs[chosen].T)
        repeated = int((cands.hits >= 2).sum())
        if s < match and repeated > swept:
            swept = repeated  # only new recurring directions can make a swap pay
            chosen, s = improve(cands, chosen, score, s, pool=2 * b)
        if s > best_s:
            best_q, best_s = cands.dirs[chosen].T, s
        if best_s >= match:
            break
    if best_s < 0 and len(cands.dirs):
        best_q = cands.dirs[greedy_order(cands, b)].T
    return best_q, best_s, done, len(cands.dirs)


class Spear(Attack):
    """SPEAR: exact recovery of a whole batch from a linear layer followed by ReLU.

    Dimitrov, Baader, Mueller, Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated Learning",
    NeurIPS 2024. dL/dW = (dL/dZ)^T X has rank b; its SVD gives dL/dW = L R and a disaggregation matrix Q
    with (dL/dZ)^T = L Q, X = Q^{-1} R. ReLU zeroes about half of each column of dL/dZ, so the null vector of
    b-1 sampled rows of L is a column of Q when those rows are zeros of one column: sample, keep the
    directions whose L q has at least ``tau * m`` zeros, select b greedily by sparsity, fix the scales from
    dL/db = L Q 1 (least squares), and X = diag(1/c) Q^{-1} R. A selection is scored by the paper's
    sparsity-matching coefficient: the fraction of (unit, sample) pairs where the recovered batch's
    pre-activation is <= 0 exactly where the gradient's entry is zero (1 for the true batch); a selection
    that mismatches is improved by swapping in other candidates (the paper's second greedy stage).

    Choices where the paper leaves room, all made for images with non-negative pixels, whose activation
    patterns are strongly correlated (a quarter to a half of the units are inactive for the whole batch, two
    samples share up to 90% of their zeros, and most (b-1)-row subsets of one sample's zeros are shared by a
    second sample, so they lose a rank):

    * Rows of L that are zero (units inactive for every sample) constrain nothing and are dropped; ``m`` and
      the filter ``tau * m`` count the remaining units, and ``tau`` is 0.05, not a larger fraction, since a
      sample may be alone inactive on only ~10% of them. A direction that is not structural has exactly the
      b-1 sampled zeros, so any threshold above b rejects it.
    * A sampled submatrix must have rank b-1 (``cond_tol``): when all its rows are zeros of two columns the
      null vector is an arbitrary mix of both. Such a submatrix is not wasted when its null space is a plane:
      it is span(q_i, q_j), and completing it with each other row in turn (b-1 rows again, SPEAR's own kind
      of sample) gives q_i for every row in Z_i only, q_j for every row in Z_j only; the directions many rows
      agree on are taken as candidates (:func:`plane_directions`).
    * ``complete`` (default) draws b-2 rows and completes them with every other row in the same way: the
      candidates are those of SPEAR's (b-1)-row submatrices containing the draw, m of them per draw at the
      cost of one. ``complete=false`` is SPEAR's plain sampling of b-1 rows.
    * Each new direction is re-fitted on its whole zero set and counted at a tight tolerance (``zero_tol``
      1e-5: the observed gradient is float32, true zeros of L q sit below 1e-7 of the largest entry, true
      non-zeros almost always above 1e-5), and a direction whose zero set reaches rank b-1 only through one
      row (a mix of two columns pinned by one accidental zero) is dropped (:func:`refine`).
    * We sample in chunks and stop as soon as a selection is accepted (the paper samples a fixed pool): no
      unit with a non-zero gradient inactive for the recovered batch, and at most ``slack`` (1) active units
      with a zero gradient (:func:`matching`; a nested pair's mix below leaves 6 of 1392, the true batches at
      most 1 in our runs). Otherwise the batch fails with reason ``budget`` (too few directions) or
      ``verification`` (a wrong direction), never silently wrong. The default budget, 4 * 10^5 draws, covers
      the hardest b = 8 batch of built-in crops we met (3.5 * 10^5 draws; most need 10^4).

    Nested activation patterns (a limit of the first layer, not of the budget): when the zero set of one
    sample lies inside another's (image i inactive wherever image j is), the first layer fixes neither q_i
    within span(q_i, q_j) nor x_j (any x_j - s x_i with the same activation pattern fits dL/dW, dL/db and the
    ReLU zeros); 1 of 8 batches of 8 built-in crops has such a pair. With ``next_layer`` (our extension, on by
    default) a selection of b-1 true directions and one wrong one is completed from the next linear layer's
    gradient, whose row space must hold every sample's hidden activation (:func:`.spear_verify.complete`),
    and then re-scored by sparsity matching; two nested pairs in one batch still fail ``verification``.
    Needs the input layer of an FC ReLU network (``vision/mlp``); labels come from the last layer once the
    inputs are known. Computed in float64.
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
        alive = L.norm(dim=1) > c.zero_tol * L.norm(dim=1).max()
        L, db = L[alive], db[alive]  # units inactive for the whole batch are zero rows: they constrain nothing
        W = layer.module.weight.detach().to(L)[alive]
        bias = layer.module.bias.detach().to(L)[alive]
        if len(L) < b:
            raise AttackFailed("rank", f"only {len(L)} units of layer '{layer.name}' are active for the batch of "
                                       f"{b}; SPEAR needs more active units than samples")

        nxt = NextLayer.find(view.model, layer, update, b, c.rank_tol) if c.next_layer and b > 1 else None
        match = accepted(c, len(L), b)
        completed: dict[bytes, tuple[torch.Tensor, torch.Tensor, int]] = {}  # by selection: improve() tries many

        def key(Q: torch.Tensor) -> bytes:
            return Q.cpu().numpy().tobytes()

        def score(Q: torch.Tensor) -> float:
            solved = solve(L, R, db, Q)
            if solved is None:
                return -1.0
            coeff = matching(solved[0], solved[1], W, bias, c.zero_tol)
            if nxt is None or (coeff >= match and nxt.holds(solved[1])):
                return coeff
            done = complete(solved[1], solved[0], alive, nxt, c.zero_tol)
            if done is not None:
                dZt = (dW @ torch.linalg.pinv(done[0]))[alive]  # the first layer re-solved for the completed batch
                fixed = matching(dZt, done[0], W, bias, c.zero_tol)
                if fixed >= match:
                    completed[key(Q)] = dZt, done[0], done[1]
                    return fixed
            # A nested pair lets a wrong direction match every ReLU zero: off the next layer's span, it is wrong.
            return coeff - 1.0 if coeff >= match else coeff

        if b == 1:
            Q = torch.ones((1, 1), dtype=L.dtype, device=L.device)
            tried, found, coeff = 0, 1, score(Q)
        else:
            gen = torch.Generator(device=view.generator.device)
            gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=view.generator, device=view.generator.device)))
            Q, coeff, tried, found = search(L, c, budget or c.samples, gen, score)
            if Q.shape[1] < b:
                raise AttackFailed("budget", f"found {Q.shape[1]} of {b} independent sparse directions in {tried} "
                                             "samples; raise --budget")
        solved = solve(L, R, db, Q)
        if solved is None:
            raise AttackFailed("scale", "a sample's bias gradient vanishes; its scale cannot be recovered")
        if coeff < match:
            raise AttackFailed("verification", f"best sparsity-matching coefficient {coeff:.4f} < {match:.4f} "
                                               f"after {tried} samples ({found} candidate directions): a sample's "
                                               "direction was not found; raise --budget")
        slot = None
        if key(Q) in completed:
            *solved, slot = completed[key(Q)]
        dZt, X = solved
        data = images(X, view)
        labels = labels_from_inputs(view, update, data)
        residual = float((dZt @ X - dW[alive]).norm() / dW.norm())
        return Reconstruction(Batch(data, labels, "image"),
                              info={"layer": layer.name, "samples": tried, "candidates": found,
                                    "sparsity_matching": coeff, "residual": residual, "next_layer_slot": slot})

