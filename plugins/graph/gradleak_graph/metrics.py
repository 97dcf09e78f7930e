"""Graph metrics: ``exact``, ``gsm`` (GRAIN's graph similarity measure), ``node_acc`` and ``edge_f1``.

Nodes of a reconstruction are matched to the true nodes as in GRAIN's ``utils/metrics.py``: Hungarian
assignment on the summed squared distances of node features and of every layer's embedding under a fixed,
randomly initialised evaluation GCN (seed 0), so that structure, not only features, decides the matching.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from gradleak import Batch, Metric

from .modality import edge_set, node_keys, to_networkx

#: Layers and width of the evaluation GCN (GRAIN's ``config_eval.yaml`` uses a random GCN too).
EVAL_LAYERS = 2
EVAL_WIDTH = 64


@lru_cache(maxsize=8)
def _eval_weights(dim: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    sizes = [dim] + [EVAL_WIDTH] * EVAL_LAYERS
    return tuple(torch.randn(a, b, generator=gen, dtype=torch.float64) / a ** 0.5 for a, b in zip(sizes, sizes[1:]))


def eval_embeddings(graph) -> list[np.ndarray]:
    """Node features plus each layer of the evaluation GCN (ReLU between layers), as float64 arrays."""
    x = graph.x.detach().cpu().double()
    n = x.shape[0]
    a = torch.eye(n, dtype=torch.float64)
    for i, j in edge_set(graph):
        a[i, j] = a[j, i] = 1.0
    d = a.sum(1).rsqrt()
    a = d[:, None] * a * d[None, :]
    out, h = [x.numpy()], x
    for k, w in enumerate(_eval_weights(x.shape[1])):
        h = a @ h @ w
        if k < EVAL_LAYERS - 1:
            h = torch.relu(h)
        out.append(h.numpy())
    return out


def match_nodes(recon, truth) -> tuple[np.ndarray, np.ndarray]:
    """An isomorphism when the graphs are isomorphic (with features), else a Hungarian matching on
    embeddings (GRAIN's); returns (recon rows, truth cols). Embedding ties between symmetric nodes would let
    the Hungarian matching break an exact reconstruction, hence the isomorphism first."""
    import networkx as nx
    from scipy.optimize import linear_sum_assignment

    gr, gt = to_networkx(recon), to_networkx(truth)
    if len(gr) == len(gt) and gr.number_of_edges() == gt.number_of_edges():
        matcher = nx.algorithms.isomorphism.GraphMatcher(gr, gt, node_match=lambda a, b: a["key"] == b["key"])
        if matcher.is_isomorphic():
            pairs = sorted(matcher.mapping.items())
            return np.array([p[0] for p in pairs], dtype=int), np.array([p[1] for p in pairs], dtype=int)

    er, et = eval_embeddings(recon), eval_embeddings(truth)
    if er[0].shape[1] != et[0].shape[1]:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    cost = sum(((r[:, None, :] - t[None, :, :]) ** 2).sum(-1) for r, t in zip(er, et))
    return linear_sum_assignment(cost)


def _node_map(recon, truth) -> dict[int, int]:
    """Reconstructed node -> the true node :func:`match_nodes` pairs it with."""
    rows, cols = match_nodes(recon, truth)
    return {int(i): int(j) for i, j in zip(rows, cols)}


class _PerGraph(Metric):
    """A graph metric scoring each reconstructed graph against the true graph at its place in the batch."""

    modalities = frozenset({"graph"})

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return torch.tensor([self.score(r, t) for r, t in zip(recon.data, truth.data)])

    def score(self, recon, truth) -> float:
        """The value of one pair of graphs."""
        raise NotImplementedError


class Exact(_PerGraph):
    """1 when the reconstructed graph is isomorphic to the truth with identical node features, else 0 (GRAIN)."""

    name = "exact"
    paper = "Drencheva et al., GRAIN, ICLR 2025"

    def score(self, r, t) -> float:
        import networkx as nx

        gr, gt = to_networkx(r), to_networkx(t)
        same = (len(gr) == len(gt) and gr.number_of_edges() == gt.number_of_edges()
                and nx.is_isomorphic(gr, gt, node_match=lambda a, b: a["key"] == b["key"]))
        return float(same)


class NodeAcc(_PerGraph):
    """Share of true nodes correctly placed: matched to a node with the same features and matched neighbours."""

    name = "node_acc"
    paper = "Drencheva et al., GRAIN, ICLR 2025 (the baseline's 'correctly positioned nodes')"

    def score(self, r, t) -> float:
        to_true = _node_map(r, t)
        kr, kt = node_keys(r), node_keys(t)
        nr, nt = _neighbours(r), _neighbours(t)
        good = sum(1 for i, j in to_true.items()
                   if kr[i] == kt[j] and {to_true.get(u, -1) for u in nr[i]} == nt[j])
        return good / max(len(kr), len(kt), 1)


class EdgeF1(_PerGraph):
    """F1 of the reconstructed edges against the true ones, after matching nodes."""

    name = "edge_f1"
    paper = "Drencheva et al., GRAIN, ICLR 2025"

    def score(self, r, t) -> float:
        to_true = _node_map(r, t)
        er = {tuple(sorted((to_true[i], to_true[j]))) for i, j in edge_set(r) if i in to_true and j in to_true}
        et = edge_set(t)
        n_r, n_t = len(edge_set(r)), len(et)
        if n_r == 0 and n_t == 0:
            return 1.0
        return 2 * len(er & et) / (n_r + n_t)


class GSM(_PerGraph):
    """GRAIN's graph similarity: mean of GSM-0 (feature F1) and GSM-k (R^2 of k-layer embeddings), size-scaled.

    Drencheva et al., ICLR 2025. GSM-0 is the weighted F1 over one-hot groups, approximated here by the F1 of
    matched nodes' active feature columns; GSM-k = max(R^2, 0) of the evaluation GCN's layer-k embeddings;
    each is multiplied by min(n1, n2) / max(n1, n2). The paper reports the levels apart; we average them
    into one number in [0, 1] (1 for an exact reconstruction).
    """

    name = "gsm"
    paper = "Drencheva et al., GRAIN, ICLR 2025"

    def score(self, r, t) -> float:
        rows, cols = match_nodes(r, t)
        if len(rows) == 0:
            return 0.0
        factor = min(r.num_nodes, t.num_nodes) / max(r.num_nodes, t.num_nodes)
        er, et = eval_embeddings(r), eval_embeddings(t)
        xr, xt = er[0][rows] > 0.5, et[0][cols] > 0.5
        tp = float((xr & xt).sum())
        f1 = 2 * tp / max(float(xr.sum() + xt.sum()), 1.0)
        levels = [f1]
        for a, b in zip(er[1:], et[1:]):
            ta, pb = b[cols].ravel(), a[rows].ravel()
            ss = float(((ta - ta.mean()) ** 2).sum())
            r2 = 1.0 - float(((ta - pb) ** 2).sum()) / ss if ss > 0 else float(np.allclose(ta, pb))
            levels.append(max(r2, 0.0))
        return factor * sum(levels) / len(levels)


def _neighbours(graph) -> list[set[int]]:
    nb: list[set[int]] = [set() for _ in range(graph.num_nodes)]
    for i, j in edge_set(graph):
        nb[i].add(j)
        nb[j].add(i)
    return nb


METRICS = [Exact, GSM, NodeAcc, EdgeF1]
