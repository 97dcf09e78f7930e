"""GCN and GAT classifiers of GRAIN (Drencheva et al., ICLR 2025), built on torch-geometric layers.

As in GRAIN's ``models/gcn.py``: two message-passing layers (ReLU after the first, the last one linear),
then a readout MLP over ``concat(x_i, h_i)`` per node (two hidden layers with ReLU, then a linear output);
graph classification averages the node logits, node classification keeps them. The default widths are the
paper's (300).

GCN normalisation is computed here from the degree of each node, ``1/sqrt((d_i+1)(d_j+1))`` with self loops,
so the attack can evaluate a candidate neighbourhood with the degrees its node features encode
(:meth:`GraphClassifier.embed` takes an optional ``degree``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .features import FeatureSpec


def gcn_weights(edge_index: torch.Tensor, num_nodes: int, degree: torch.Tensor | None = None,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge index with self loops and the symmetric GCN weights for the given (or counted) degrees."""
    loops = torch.arange(num_nodes, device=edge_index.device)
    full = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    if degree is None:
        degree = torch.bincount(edge_index[1], minlength=num_nodes)
    d = degree.to(dtype) + 1.0
    weight = (d[full[0]] * d[full[1]]).rsqrt()
    return full, weight


class GraphClassifier(nn.Module):
    """GCN or GAT backbone (2 layers) plus GRAIN's per-node readout MLP.

    ``forward(x, edge_index, batch)`` returns graph logits ``(num_graphs, classes)`` (``task="graph"``) or
    node logits ``(num_nodes, classes)`` (``task="node"``).
    """

    def __init__(self, spec: FeatureSpec, num_classes: int, arch: Literal["gcn", "gat"] = "gcn",
                 hidden: int = 300, readout: int = 300, heads: int = 1,
                 task: Literal["graph", "node"] = "graph") -> None:
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv

        self.spec, self.arch, self.task = spec, arch, task
        f = spec.dim
        if arch == "gcn":
            self.conv1 = GCNConv(f, hidden, normalize=False, add_self_loops=False)
            self.conv2 = GCNConv(hidden, hidden, normalize=False, add_self_loops=False)
            emb = hidden
        else:
            self.conv1 = GATConv(f, hidden, heads=heads)
            self.conv2 = GATConv(hidden * heads, hidden, heads=heads)
            emb = hidden * heads
        self.readout = nn.Sequential(nn.Linear(f + emb, readout), nn.ReLU(), nn.Linear(readout, readout), nn.ReLU(),
                                     nn.Linear(readout, num_classes))

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor, degree: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node embeddings after layer 1 (ReLU) and layer 2 (linear); GCN uses ``degree`` when given."""
        if self.arch == "gcn":
            full, w = gcn_weights(edge_index, x.shape[0], degree, x.dtype)
            h1 = torch.relu(self.conv1(x, full, w))
            return h1, self.conv2(h1, full, w)
        h1 = torch.relu(self.conv1(x, edge_index))
        return h1, self.conv2(h1, edge_index)

    def readout_input(self, x: torch.Tensor, edge_index: torch.Tensor,
                      degree: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([x, self.embed(x, edge_index, degree)[1]], dim=1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.readout(self.readout_input(x, edge_index))
        if self.task == "node":
            return logits
        from torch_geometric.nn import global_mean_pool

        return global_mean_pool(logits, batch)

    def span_layers(self) -> dict[str, str]:
        """Parameter names whose gradients GRAIN reads: layer-1 and layer-2 weights and the readout's first layer."""
        conv = "lin.weight"
        return {"layer1": f"conv1.{conv}", "layer2": f"conv2.{conv}", "readout": "readout.0.weight"}
