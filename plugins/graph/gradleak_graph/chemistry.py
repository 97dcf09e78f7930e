"""Valence rules for molecule candidates: a constraint of the data kind that prunes GRAIN's search.

GRAIN (Drencheva et al., ICLR 2025) enumerates every one-hot combination that lies in the first layer's
gradient span. For molecules, many of those are affine combinations of the true rows that no real atom can
have, e.g. a neutral non-aromatic sp3 carbon with two heavy neighbours and no hydrogen (valence 2), and every
such false candidate multiplies the number of 1-hop blocks to test. The paper's code has no such filter (it
runs on a GPU for up to 30 minutes per molecule); with our 30 s CPU budget we drop candidates that violate the
octet rule, a fact about the data kind rather than about the private graph:

- the valence ``V`` of an atom of element ``Z`` and formal charge ``q`` is one of RDKit's allowed valences of
  the isoelectronic element ``Z - q`` (N+ like C: 4; O- like F: 1; C- like N: 3; ...), as RDKit's sanitiser
  assumes; radicals (atoms with unpaired electrons) are not modelled;
- ``V = degree + hydrogens + e``, where ``e >= 0`` is the number of extra bond orders (pi bonds in a Kekulé
  form); for B to F (period 2, no expanded octet) ``V`` is exact and ``e`` is bounded by the hybridisation:
  0 for sp3, at most 1 for sp2 and aromatic atoms, at most 2 for sp; heavier atoms (P, S, Cl, ...) may
  expand their octet, so for them only ``degree + hydrogens <= max V`` is required;
- an aromatic atom has at least two heavy neighbours, and (for 1-hop blocks) at least two aromatic ones;
- the pi bonds of a block's centre end at its neighbours: ``e_min(centre) <= sum_j min(e_max(j), 2)``.

Among graphs that match the gradient equally (a 2-layer GNN's gradient is a function of the multiset of
2-hop neighbourhoods), :func:`huckel_possible` lets the search prefer graphs whose aromatic ring systems can
hold ``4k + 2`` pi electrons.

Slots that collect out-of-range values (``other`` atom, charge slot ``3``, ``>= 6`` bonds, ``>= 4`` hydrogens,
``other`` hybridisation) are left unconstrained. All atoms of RDKit's NCI ``first_5K.smi`` (but one in an
iron complex) and of its ChEMBL sample pass these rules, and all their aromatic systems pass Hückel's rule
(checked by a test on the NCI file).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .features import FeatureSpec

_Z = {"B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "Si": 14, "P": 15, "S": 16, "Cl": 17, "Se": 34, "Br": 35, "I": 53}
_MAX_PI = {"SP3": 0, "SP2": 1, "SP": 2}
_OPEN = 3  # pi bonds allowed where a slot leaves the count open


@lru_cache(maxsize=None)
def _valences(symbol: str, charge: int) -> tuple[int, ...] | None:
    """RDKit's allowed valences of the element isoelectronic to ``symbol`` with ``charge``; None if unknown."""
    from rdkit import Chem

    z = _Z.get(symbol, 0) - charge
    if symbol not in _Z or z < 1:
        return None
    found = tuple(v for v in Chem.GetPeriodicTable().GetValenceList(z) if v >= 0)
    return found or None


@dataclass(frozen=True)
class AtomRule:
    """Whether a candidate row can be a real atom, and the range of its extra bond orders ``e``."""

    possible: bool
    aromatic: bool
    e_min: int
    e_max: int


def atom_rule(d: dict) -> AtomRule:
    """The valence rule of one decoded feature row (``FeatureSpec.describe``); see the module docstring."""
    symbol, charge, aromatic, hyb = d["atom"], d["charge"], bool(d["aromatic"]), d["hybridisation"]
    degree, hydrogens = d["degree"], d["hydrogens"]
    if aromatic and (degree < 2 or hyb not in ("SP2", "other")):
        return AtomRule(False, aromatic, 0, 0)
    valences = _valences(symbol, charge) if symbol != "other" and charge != 3 else None
    if valences is None:
        return AtomRule(True, aromatic, 0, _OPEN)
    base = degree + hydrogens
    open_ended = degree == 6 or hydrogens == 4
    max_pi = 1 if aromatic else _MAX_PI.get(hyb, _OPEN)
    if _Z[symbol] <= 10 and not open_ended:  # period 2: no expanded octet, V is exact
        e = valences[0] - base
        return AtomRule(0 <= e <= max_pi, aromatic, e, e)
    ok = base <= max(valences)
    return AtomRule(ok, aromatic, 0, min(max(valences) - base, _OPEN) if ok else 0)


def applies(spec: FeatureSpec) -> bool:
    """The rules need the molecule layout of :data:`gradleak_graph.features.CHEMICAL`."""
    return {g.name for g in spec.groups} >= {"atom", "degree", "charge", "hydrogens", "aromatic", "hybridisation"}


class Valence:
    """Per-candidate valence facts of a set of candidate node rows, for vectorised block checks."""

    def __init__(self, spec: FeatureSpec, nodes: torch.Tensor) -> None:
        rules = [atom_rule(spec.describe(row)) for row in nodes.cpu()]
        self.possible = torch.tensor([r.possible for r in rules], dtype=torch.bool)
        self.aromatic = torch.tensor([r.aromatic for r in rules], dtype=torch.bool)
        self.e_min = torch.tensor([r.e_min for r in rules], dtype=torch.long)
        self.e_max = torch.tensor([r.e_max for r in rules], dtype=torch.long)

    def blocks_ok(self, centre: int, neighbours: torch.Tensor) -> torch.Tensor:
        """Mask over rows of ``neighbours`` (``(P, d)`` candidate indices) of 1-hop blocks that obey the rules."""
        if neighbours.shape[1] == 0:
            return torch.full((len(neighbours),), int(self.e_min[centre]) == 0, dtype=torch.bool)
        ok = (self.e_max[neighbours].clamp(max=2).sum(1) >= self.e_min[centre])
        if bool(self.aromatic[centre]):
            ok &= self.aromatic[neighbours].sum(1) >= 2
        return ok



_LONE_PAIR = {"N", "O", "S", "Se", "P"}


def huckel_possible(valence: Valence, symbols: list[str], charges: list[int], types: list[int],
                    edges: list[tuple[int, int]]) -> bool:
    """Could every aromatic ring system of a candidate graph hold ``4k + 2`` pi electrons (Hückel's rule)?

    Rings are those of a minimum cycle basis made only of atoms flagged aromatic; rings sharing a bond form a
    system, and each ring passes when it or its whole system can reach ``4k + 2``. An atom with an extra bond
    order gives one electron (or none, when the bond may go to a neighbour outside the system, e.g. an
    exocyclic C=O); an aromatic atom without one gives its lone pair (N, O, S, Se, P, anions), none (B,
    cations) or either. Permissive by design: it is a tie-break among graphs with the same gradient, and
    separates e.g. a naphthalene from two aromatic 5-rings joined by a bond, which a 2-layer GNN cannot.
    """
    import networkx as nx

    n = len(types)
    arom = [bool(valence.aromatic[t]) for t in types]
    if not any(arom):
        return True
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    rings = [r for r in nx.minimum_cycle_basis(g) if all(arom[a] for a in r)]
    if not rings:
        return True
    bonds = [{frozenset((r[i], r[j])) for i in range(len(r)) for j in range(i + 1, len(r)) if g.has_edge(r[i], r[j])}
             for r in rings]
    fused = nx.Graph()
    fused.add_nodes_from(range(len(rings)))
    fused.add_edges_from((i, j) for i in range(len(rings)) for j in range(i + 1, len(rings)) if bonds[i] & bonds[j])
    system_of = {}
    for s in nx.connected_components(fused):
        atoms = set().union(*(rings[i] for i in s))
        for i in s:
            system_of[i] = atoms

    def electrons(a: int, inside: set[int]) -> set[int]:
        t = types[a]
        if int(valence.e_min[t]) >= 1:
            outside = any(int(valence.e_max[types[b]]) >= 1 for b in g[a] if b not in inside)
            return {0, 1} if outside else {1}
        if int(valence.e_max[t]) >= 1:
            return {0, 1, 2}
        if symbols[t] in _LONE_PAIR or charges[t] < 0:
            return {2}
        return {0} if symbols[t] == "B" or charges[t] > 0 else {0, 2}

    def can_be_huckel(atoms: set[int]) -> bool:
        sums = {0}
        for a in atoms:
            sums = {s + e for s in sums for e in electrons(a, atoms)}
        return any(s % 4 == 2 for s in sums)

    return all(can_be_huckel(set(r)) or can_be_huckel(system_of[i]) for i, r in enumerate(rings))
