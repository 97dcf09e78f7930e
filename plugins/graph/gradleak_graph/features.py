"""Molecules as graphs: SMILES parsing and the one-hot node features of GRAIN.

GRAIN (Drencheva et al., ICLR 2025) featurises atoms as concatenated one-hots of chemical properties
(atom type, formal charge, number of bonds, chirality, number of hydrogens, mass, aromaticity, hybridisation).
We keep the groups that are not functions of others (mass follows from the atom type; chirality is rarely set
in the offline SMILES) and a shorter atom vocabulary with an ``other`` slot. The degree (number of heavy-atom
bonds) is a node feature, as in the paper: it is what makes GCN normalisation coefficients of a candidate
neighbourhood computable. Features are plain 0/1 one-hots (the paper standardises them with dataset
statistics, which rules out only non-affine combinations of true rows; the affine ones, such as a carbon
with the charge of a nitrogen, pass the first-layer test either way and are removed by the deeper filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gradleak import DataError


@dataclass(frozen=True)
class FeatureGroup:
    """One one-hot group of the node features: its name and its possible values (in column order)."""

    name: str
    values: tuple


@dataclass(frozen=True)
class FeatureSpec:
    """The layout of node features: consecutive one-hot groups; ``degree_group`` names the degree one-hot."""

    groups: tuple[FeatureGroup, ...]
    degree_group: str = "degree"

    @property
    def is_chemical(self) -> bool:
        return any(g.name == "atom" for g in self.groups)

    @property
    def dim(self) -> int:
        return sum(len(g.values) for g in self.groups)

    def offset(self, name: str) -> int:
        start = 0
        for g in self.groups:
            if g.name == name:
                return start
            start += len(g.values)
        raise KeyError(name)

    def degree(self, x: torch.Tensor) -> torch.Tensor:
        """The degree each feature row ``x`` (``(n, dim)``) encodes, as a long tensor ``(n,)``."""
        group = next(g for g in self.groups if g.name == self.degree_group)
        start = self.offset(self.degree_group)
        block = x[..., start:start + len(group.values)]
        values = torch.tensor(group.values, dtype=torch.long, device=x.device)
        return values[block.argmax(-1)]

    def describe(self, row: torch.Tensor) -> dict[str, object]:
        out, start = {}, 0
        for g in self.groups:
            out[g.name] = g.values[int(row[start:start + len(g.values)].argmax())]
            start += len(g.values)
        return out


ATOMS = ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I", "B", "Si", "Se", "other")
HYBRIDISATIONS = ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2", "other")

CHEMICAL = FeatureSpec((
    FeatureGroup("atom", ATOMS),
    FeatureGroup("degree", tuple(range(7))),
    FeatureGroup("charge", (-2, -1, 0, 1, 2, 3)),
    FeatureGroup("hydrogens", (0, 1, 2, 3, 4)),
    FeatureGroup("aromatic", (False, True)),
    FeatureGroup("hybridisation", HYBRIDISATIONS),
))


def _one_hot(values: tuple, value: object) -> list[float]:
    row = [0.0] * len(values)
    row[values.index(value) if value in values else len(values) - 1] = 1.0
    return row


def atom_features(atom) -> list[float]:
    """The :data:`CHEMICAL` feature row of an RDKit atom (values out of range fall into the last slot)."""
    symbol = atom.GetSymbol() if atom.GetSymbol() in ATOMS else "other"
    hyb = str(atom.GetHybridization())
    return (_one_hot(ATOMS, symbol) + _one_hot(tuple(range(7)), atom.GetDegree())
            + _one_hot((-2, -1, 0, 1, 2, 3), atom.GetFormalCharge())
            + _one_hot((0, 1, 2, 3, 4), atom.GetTotalNumHs())
            + _one_hot((False, True), atom.GetIsAromatic())
            + _one_hot(HYBRIDISATIONS, hyb if hyb in HYBRIDISATIONS else "other"))


def mol_graph(smiles: str):
    """A PyG ``Data`` (``x`` one-hot float, undirected ``edge_index``, ``smiles``) or None when unparsable."""
    from rdkit import Chem, RDLogger
    from torch_geometric.data import Data

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    x = torch.tensor([atom_features(a) for a in mol.GetAtoms()], dtype=torch.float32)
    pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    edges = [(i, j) for i, j in pairs] + [(j, i) for i, j in pairs]
    edge_index = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    return Data(x=x, edge_index=edge_index, smiles=smiles)


def read_smiles_file(path: Path) -> list[tuple[str, float | None]]:
    """``(smiles, label or None)`` per non-empty line of a SMILES file.

    A line is ``SMILES`` or ``SMILES<whitespace>rest``; ``rest`` is a 0/1 label when it is one, else a name
    (RDKit's ``.smi`` files put the NCI id there). Lines starting with ``#`` and a ``smiles`` header are skipped.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"--data {path}: cannot read it as a text file of SMILES ({exc}); "
                        "pass a UTF-8 file with one SMILES a line") from None
    out: list[tuple[str, float | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or (number == 1 and stripped.lower().startswith("smiles")):
            continue
        parts = stripped.split()
        label = float(parts[1]) if len(parts) > 1 and parts[1] in ("0", "1") else None
        out.append((parts[0], label, number))  # type: ignore[arg-type]
    return out  # type: ignore[return-value]


def graphs_from_smiles(entries: Sequence[tuple], source: str) -> tuple[list, list[float | None]]:
    """Parse ``(smiles, label, line)`` entries into (graphs, labels); an unparsable one raises DataError
    naming the line and the string."""
    graphs, labels = [], []
    for smiles, label, number in entries:
        g = mol_graph(smiles)
        if g is None:
            raise DataError(f"{source} line {number}: cannot parse SMILES '{smiles}'; fix or delete that line")
        graphs.append(g)
        labels.append(label)
    if not graphs:
        raise DataError(f"{source}: holds no SMILES; write one molecule a line")
    return graphs, labels
