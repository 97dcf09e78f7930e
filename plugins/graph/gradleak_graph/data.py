"""Offline graph data: real molecules shipped with RDKit, the user's SMILES files, and real social graphs.

- Molecules: ``RDConfig.RDDataDir/NCI/first_5K.smi`` (4,999 real NCI molecules). We keep connected molecules
  of 2 to 25 heavy atoms (GRAIN attacks one connected graph per client; hydrogens are implicit, as in the
  paper). The label is a real property of each molecule, Crippen logP > 2 (the paper's Tox21/ClinTox/BBBP
  labels need a download), so the classification task is not random.
- Citation-like graphs (offline stand-in for CiteSeer, named as such): connected breadth-first subgraphs of
  the real social graphs bundled with networkx (Zachary's karate club, Les Misérables, Florentine families,
  Davis southern women), with *synthetic* binary node features drawn from a seeded generator plus the degree
  one-hot, labelled by their density.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from gradleak import Batch, DataError

from .features import FeatureGroup, FeatureSpec, graphs_from_smiles, read_smiles_file
from .modality import GraphList

#: Largest molecule of the built-in data (the issue's goal is stated for <= 25 atoms).
MAX_ATOMS = 25


def logp_label(smiles: str) -> int:
    from rdkit import Chem
    from rdkit.Chem import Crippen

    mol = Chem.MolFromSmiles(smiles)
    return int(Crippen.MolLogP(mol) > 2.0) if mol is not None else 0


def _batch(parsed: tuple[list, list]) -> Batch:
    graphs, given = parsed
    labels = torch.tensor([int(y) if y is not None else logp_label(g.smiles) for g, y in zip(graphs, given)],
                          dtype=torch.long)
    return Batch(GraphList(graphs), labels, "graph")


@lru_cache(maxsize=4)
def _nci_entries(limit: int) -> tuple:
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    entries = []
    for smiles, _label, number in read_smiles_file(path):
        if "." in smiles:
            continue
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        mol = Chem.MolFromSmiles(smiles)
        if mol is None or not 2 <= mol.GetNumAtoms() <= MAX_ATOMS:
            continue
        entries.append((smiles, None, number))
        if len(entries) >= limit:
            break
    return tuple(entries)


def nci_molecules(limit: int = 200, offset: int = 0) -> Batch:
    """Connected NCI molecules of 2..25 heavy atoms from RDKit's ``first_5K.smi``, in file order."""
    entries = _nci_entries(limit + offset)[offset:]
    return _batch(graphs_from_smiles(entries, "first_5K.smi"))


def smiles_file(path: Path) -> Batch:
    """The user's molecules, one SMILES a line (an optional second column 0/1 is the label)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"--data {path}: is a folder; pass a file of SMILES, one molecule a line")
    return _batch(graphs_from_smiles(read_smiles_file(path), f"--data {path}"))


# ----------------------------------------------------------------------------------------- citation-like graphs

#: Synthetic binary node features of the offline citation-like graphs (CiteSeer has 3,703 real ones).
CITATION_BITS = 12
#: Degrees up to this value get their own one-hot slot.
CITATION_MAX_DEGREE = 8

CITATION = FeatureSpec(tuple(FeatureGroup(f"word{i}", (0, 1)) for i in range(CITATION_BITS))
                       + (FeatureGroup("degree", tuple(range(CITATION_MAX_DEGREE + 1))),))


def _social_graphs():
    import networkx as nx

    return [nx.karate_club_graph(), nx.les_miserables_graph(), nx.florentine_families_graph(),
            nx.davis_southern_women_graph()]


def citation_like(count: int = 32, nodes: tuple[int, int] = (5, 12), seed: int = 0) -> Batch:
    """``count`` connected BFS subgraphs of networkx's real social graphs with synthetic binary features."""
    import networkx as nx
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(seed)
    sources = [nx.convert_node_labels_to_integers(g) for g in _social_graphs()]
    graphs, labels, attempts = [], [], 0
    while len(graphs) < count and attempts < 100 * count:
        attempts += 1
        g = sources[int(torch.randint(len(sources), (1,), generator=gen))]
        start = int(torch.randint(g.number_of_nodes(), (1,), generator=gen))
        size = int(torch.randint(nodes[0], nodes[1] + 1, (1,), generator=gen))
        keep = [start]
        for _, v in nx.bfs_edges(g, start):
            if len(keep) >= size:
                break
            keep.append(v)
        sub = nx.convert_node_labels_to_integers(g.subgraph(keep))
        if not nx.is_connected(sub) or max(d for _, d in sub.degree()) > CITATION_MAX_DEGREE or len(sub) < nodes[0]:
            continue
        n = sub.number_of_nodes()
        bits = (torch.rand(n, CITATION_BITS, generator=gen) < 0.3).float()
        degree = torch.zeros(n, CITATION_MAX_DEGREE + 1)
        degree[torch.arange(n), torch.tensor([d for _, d in sorted(sub.degree())])] = 1.0
        # Each word bit is its own one-hot group (0, 1): write it as two columns so groups stay one-hot.
        x = torch.cat([torch.stack([1 - bits, bits], dim=2).flatten(1), degree], dim=1)
        pairs = list(sub.edges())
        ei = torch.tensor(pairs + [(j, i) for i, j in pairs], dtype=torch.long).t().reshape(2, -1)
        graphs.append(Data(x=x, edge_index=ei))
        labels.append(int(nx.density(sub) > 0.3))
    if len(graphs) < count:
        raise DataError(f"could draw only {len(graphs)} citation-like subgraphs of {nodes} nodes; ask for fewer")
    return Batch(GraphList(graphs), torch.tensor(labels, dtype=torch.long), "graph")


def dataset_root(path: Path) -> Path:
    """A PyG dataset folder for ``--data`` (CiteSeer when online); it must exist."""
    if not os.path.isdir(path):
        raise DataError(f"--data {path}: no such PyG dataset folder; pass the root holding CiteSeer/ "
                        "or leave --data out for the offline citation-like graphs")
    return Path(path)
