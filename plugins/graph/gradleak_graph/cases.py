"""Graph cases: a server attacking clients that train GRAIN's GCN/GAT graph classifiers on private graphs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from gradleak import Batch, Case, CaseConfig
from gradleak.config import param, require_count

from .data import CITATION, citation_like, dataset_root, nci_molecules, smiles_file
from .features import CHEMICAL, FeatureSpec
from .models import GraphClassifier


@dataclass(frozen=True)
class GraphCaseConfig(CaseConfig):
    """Protocol and threat-model knobs plus the model widths (GRAIN's defaults: 300)."""

    hidden: int = param(300, "width of both message-passing layers (GRAIN: 300)")
    readout: int = param(300, "width of the readout MLP's hidden layers (GRAIN: 300)")
    heads: int = param(1, "attention heads of the GAT layers (GAT cases only)")
    molecules: int = param(128, "built-in molecules (connected, <= 25 atoms) loaded when --data is not given")

    def validate(self, owner: str) -> None:
        super().validate(owner)
        require_count(self, owner, "hidden", "readout", "heads", "molecules")


def collate(graphs) -> Any:
    from torch_geometric.data import Batch as PygBatch

    return PygBatch.from_data_list(list(graphs))


class _GraphCase(Case):
    modality = "graph"
    num_classes = 2
    default_batch_size = 1
    Config = GraphCaseConfig
    paper = "Drencheva et al., GRAIN: Exact Graph Reconstruction from Gradients, ICLR 2025"
    arch: ClassVar[str] = "gcn"
    spec: ClassVar[FeatureSpec] = CHEMICAL

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GraphClassifier(self.spec, self.num_classes, self.arch, self.config.hidden, self.config.readout,
                                    self.config.heads)
        return model.to(self.device)

    def forward(self, model: torch.nn.Module, batch: Batch | Any) -> torch.Tensor:
        """Collate the batch's graphs into one PyG ``Batch`` and return graph logits."""
        graphs = batch.data if isinstance(batch, Batch) else batch
        pyg = collate(graphs)
        return model(pyg.x, pyg.edge_index, pyg.batch)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy over graphs; ``labels`` are class ids ``(N,)`` or probabilities ``(N, K)``."""
        if labels is None:
            raise ValueError(f"case '{self.name}' needs labels to compute its loss")
        return F.cross_entropy(outputs, labels)


class GCNMolecules(_GraphCase):
    """GRAIN's GCN (2 layers, width 300, readout MLP) on real NCI molecules, one molecule per client.

    Drencheva et al., ICLR 2025. Built-in data: connected molecules of <= 25 heavy atoms from RDKit's
    ``first_5K.smi``, one-hot chemical node features, label logP > 2. ``--data FILE.smi``: one SMILES a line.
    """

    name = "gcn-molecules"

    def load_data(self, path: Path | None) -> Batch:
        return nci_molecules(self.config.molecules) if path is None else smiles_file(path)


class GATMolecules(GCNMolecules):
    """GRAIN's GAT variant (2 GATConv layers, width 300, readout MLP) on real NCI molecules.

    Drencheva et al., ICLR 2025. Same data as ``graph/gcn-molecules``.
    """

    name = "gat-molecules"
    arch = "gat"


class GCNCitation(_GraphCase):
    """GRAIN's GCN on citation-like subgraphs: PyG CiteSeer from ``--data ROOT``; offline, real social graphs.

    Drencheva et al., ICLR 2025. Offline (default): BFS subgraphs of 5-12 nodes of networkx's real social
    graphs with *synthetic* binary node features plus the degree one-hot. ``--data ROOT``: a folder holding
    PyG's ``CiteSeer`` (``Planetoid(ROOT, "CiteSeer")``, downloaded when online). Graph classification by density.
    """

    name = "gcn-citation"
    spec = CITATION

    def load_data(self, path: Path | None) -> Batch:
        if path is None:
            return citation_like()
        return planetoid_subgraphs(dataset_root(path), self)


def planetoid_subgraphs(root: Path, case: GCNCitation, count: int = 32) -> Batch:
    """Connected BFS subgraphs of CiteSeer (binary word features plus degree one-hot), labelled by density."""
    import networkx as nx
    from torch_geometric.data import Data
    from torch_geometric.datasets import Planetoid
    from torch_geometric.utils import to_networkx

    from .data import CITATION_MAX_DEGREE
    from .features import FeatureGroup
    from .modality import GraphList

    data = Planetoid(str(root), "CiteSeer")[0]
    words = data.x.shape[1]
    case.spec = FeatureSpec(tuple(FeatureGroup(f"word{i}", (0, 1)) for i in range(words))
                            + (FeatureGroup("degree", tuple(range(CITATION_MAX_DEGREE + 1))),))
    g = to_networkx(data, to_undirected=True)
    gen = torch.Generator().manual_seed(0)
    graphs, labels = [], []
    for _ in range(100 * count):
        if len(graphs) >= count:
            break
        start = int(torch.randint(data.num_nodes, (1,), generator=gen))
        keep = [start] + [v for _, v in nx.bfs_edges(g, start, depth_limit=2)][:9]
        sub = g.subgraph(keep)
        if len(sub) < 3 or not nx.is_connected(sub) or max(d for _, d in sub.degree()) > CITATION_MAX_DEGREE:
            continue
        order = sorted(sub.nodes())
        index = {v: i for i, v in enumerate(order)}
        bits = (data.x[order] > 0).float()
        deg = torch.zeros(len(order), CITATION_MAX_DEGREE + 1)
        deg[torch.arange(len(order)), torch.tensor([sub.degree(v) for v in order])] = 1.0
        pairs = [(index[a], index[b]) for a, b in sub.edges()]
        ei = torch.tensor(pairs + [(b, a) for a, b in pairs], dtype=torch.long).t().reshape(2, -1)
        graphs.append(Data(x=torch.cat([torch.stack([1 - bits, bits], 2).flatten(1), deg], 1), edge_index=ei))
        labels.append(int(nx.density(sub) > 0.3))
    return Batch(GraphList(graphs), torch.tensor(labels, dtype=torch.long), "graph")


#: The cases this module registers.
CASES = [GCNMolecules, GATMolecules, GCNCitation]
