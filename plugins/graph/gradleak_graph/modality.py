"""The ``graph`` modality: lists of PyG ``Data`` (node features ``x``, undirected ``edge_index``) plus labels."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import torch

from gradleak import Batch, Modality


class GraphList(list):
    """A list of PyG ``Data`` graphs that moves to a device like a tensor (``Batch.to`` calls ``.to``)."""

    def to(self, device: torch.device | str) -> GraphList:
        return GraphList(g.to(device) for g in self)

    @property
    def device(self) -> torch.device:
        return self[0].x.device if self else torch.device("cpu")


def edge_set(graph) -> set[tuple[int, int]]:
    """Undirected edges ``(i, j)`` with ``i < j`` (self loops dropped)."""
    ei = graph.edge_index.detach().cpu().tolist()
    return {(min(i, j), max(i, j)) for i, j in zip(*ei) if i != j} if ei else set()


def node_keys(graph) -> list[tuple[int, ...]]:
    """Each node's feature row as a hashable tuple of its nonzero columns (features are one-hot groups)."""
    x = graph.x.detach().cpu()
    return [tuple(torch.nonzero(row > 0.5).flatten().tolist()) for row in x]


def to_networkx(graph):
    import networkx as nx

    g = nx.Graph()
    for i, key in enumerate(node_keys(graph)):
        g.add_node(i, key=key)
    g.add_edges_from(edge_set(graph))
    return g


class Graph(Modality):
    """Graphs: PyG ``Data`` per sample (one-hot node features, undirected edges) plus graph labels.

    Reconstructed graphs are matched to true ones by the mismatch of their node-feature multisets and edge
    counts (Hungarian), saved as ``truth.json``/``recon.json`` (a list of ``{"x": [[...]], "edges": [[i, j]]}``)
    and drawn side by side in ``graphs.png``. A sample is a success when the graph is reconstructed exactly
    (isomorphic with identical node features).
    """

    name = "graph"
    primary_metric = "exact"
    default_metrics = ("exact", "gsm", "node_acc", "edge_f1")
    success_criterion = "graph isomorphic to the truth with identical node features"

    def is_success(self, metrics: Mapping[str, float]) -> bool:
        return float(metrics["exact"]) >= 1.0

    def pairwise_cost(self, recon: Batch, truth: Batch) -> torch.Tensor:
        """``cost[i, j]``: share of unmatched node features between graphs plus relative edge-count gap."""
        cost = torch.zeros(len(recon.data), len(truth.data), dtype=torch.float64)
        rk = [(Counter(node_keys(g)), len(edge_set(g))) for g in recon.data]
        tk = [(Counter(node_keys(g)), len(edge_set(g))) for g in truth.data]
        for i, (rc, re) in enumerate(rk):
            for j, (tc, te) in enumerate(tk):
                common = sum((rc & tc).values())
                size = max(sum(rc.values()), sum(tc.values()), 1)
                cost[i, j] = 1.0 - common / size + abs(re - te) / max(re, te, 1)
        return cost

    def select(self, batch: Batch, index: torch.Tensor) -> Batch:
        idx = [int(i) for i in index.tolist()]
        labels = batch.labels_at(index)
        return batch.replace(data=GraphList(batch.data[i] for i in idx), labels=labels)

    def concat(self, batches: list[Batch]) -> Batch:
        if not batches:
            raise ValueError("concat needs at least one batch")
        data = GraphList(g for b in batches for g in b.data)
        labels = Batch.joined_labels(batches)
        return Batch(data, labels, self.name)

    def save(self, batch: Batch, directory: Path, stem: str) -> dict[str, str]:
        """Write ``<stem>.json``: per graph its node features ``x`` and its undirected ``edges`` (i < j)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem}.json"
        rows = [{"x": g.x.detach().cpu().tolist(), "edges": sorted([list(e) for e in edge_set(g)]),
                 **({"smiles": g.smiles} if isinstance(getattr(g, "smiles", None), str) else {})}
                for g in batch.data]
        path.write_text(json.dumps(rows))
        return {stem: str(path)}

    def save_pictures(self, truth: Batch, recon: Batch, directory: Path) -> dict[str, str]:
        """Write ``graphs.png``: each true graph (top row) above its reconstruction, nodes labelled by type."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import networkx as nx

        n = len(truth.data)
        fig, axes = plt.subplots(2, n, figsize=(3 * n, 6), squeeze=False)
        for row, graphs in enumerate((truth.data, recon.data)):
            for col in range(n):
                ax = axes[row][col]
                ax.set_axis_off()
                if col >= len(graphs):
                    continue
                g = to_networkx(graphs[col])
                dim = graphs[col].x.shape[1]
                labels = {i: _node_label(k, dim) for i, k in nx.get_node_attributes(g, "key").items()}
                nx.draw_networkx(g, pos=nx.kamada_kawai_layout(g) if len(g) > 1 else None, ax=ax, labels=labels,
                                 node_size=120, font_size=6, node_color="#9ecae1" if row == 0 else "#fdae6b")
                ax.set_title(("truth" if row == 0 else "reconstruction") + f" {col}", fontsize=8)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "graphs.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return {"graphs": str(path)}


def _node_label(key: tuple[int, ...], dim: int) -> str:
    """The element symbol for molecular features (first one-hot group), else the first active column."""
    from .features import ATOMS, CHEMICAL

    if not key:
        return ""
    return ATOMS[key[0]] if dim == CHEMICAL.dim and key[0] < len(ATOMS) else str(key[0])
