"""GRAIN's pruning aids: valence rules hold for real atoms, 2-hop shares are read exactly off the gradient."""

from __future__ import annotations

import os

import torch

import gradleak
from gradleak import AttackerView, Update


def _nci_smiles(limit: int) -> list[str]:
    from rdkit import RDConfig

    from gradleak_graph.features import read_smiles_file

    path = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    return [s for s, _, _ in read_smiles_file(path)][:limit]  # type: ignore[misc]


def test_every_real_atom_and_its_neighbourhood_obeys_the_valence_rules():
    """The rules only prune what no real molecule has: all atoms of 250 NCI molecules pass, with their blocks,
    and so do their aromatic ring systems (Hückel's rule)."""
    from gradleak_graph.chemistry import Valence, huckel_possible
    from gradleak_graph.features import CHEMICAL, mol_graph

    atoms = 0
    for smiles in _nci_smiles(250):
        g = mol_graph(smiles)
        if g is None or any(s in smiles for s in ("Fe", "Co", "Cu", "Pt", "Hg", "Sn")):  # metal complexes
            continue
        rules = Valence(CHEMICAL, g.x)
        described = [CHEMICAL.describe(row) for row in g.x]
        edges = [(a, b) for a, b in g.edge_index.t().tolist() if a < b]
        assert huckel_possible(rules, [d["atom"] for d in described], [d["charge"] for d in described],
                               list(range(g.num_nodes)), edges), smiles
        adj: list[list[int]] = [[] for _ in range(g.num_nodes)]
        for a, b in g.edge_index.t().tolist():
            adj[a].append(b)
        for c in range(g.num_nodes):
            atoms += 1
            assert bool(rules.possible[c]), (smiles, c, CHEMICAL.describe(g.x[c]))
            assert bool(rules.blocks_ok(c, torch.tensor([adj[c]], dtype=torch.long).reshape(1, -1))[0]), (smiles, c)
    assert atoms > 3_000


def test_valence_rules_reject_impossible_atoms_and_blocks():
    from gradleak_graph.chemistry import Valence, atom_rule
    from gradleak_graph.features import CHEMICAL, mol_graph

    base = {"atom": "C", "degree": 2, "charge": 0, "hydrogens": 0, "aromatic": False, "hybridisation": "SP3"}
    assert not atom_rule(base).possible  # a divalent sp3 carbon
    assert atom_rule({**base, "hydrogens": 2}).possible
    assert not atom_rule({**base, "hydrogens": 1, "aromatic": True, "hybridisation": "SP2", "degree": 1}).possible
    nitro = atom_rule({**base, "atom": "N", "degree": 3, "charge": 1, "hybridisation": "SP2"})
    assert nitro.possible and (nitro.e_min, nitro.e_max) == (1, 1)
    # Benzene's aromatic CH needs two aromatic neighbours, and its pi bond a partner that can take one.
    g = mol_graph("Cc1ccccc1")
    rules = Valence(CHEMICAL, g.x)
    assert bool(rules.blocks_ok(2, torch.tensor([[1, 3]]))[0])
    assert not bool(rules.blocks_ok(2, torch.tensor([[0, 3]]))[0])  # methyl + one aromatic neighbour


def test_huckel_rule_separates_naphthalene_from_two_joined_aromatic_five_rings():
    """Same atoms, same 2-hop neighbourhoods (the same GNN gradient): only the fused 6-rings can be aromatic."""
    from gradleak_graph.chemistry import Valence, huckel_possible
    from gradleak_graph.features import CHEMICAL, mol_graph

    g = mol_graph("c1ccc2ccccc2c1")  # atoms 3 and 8 are the ring fusion
    rules, symbols, charges = Valence(CHEMICAL, g.x), ["C"] * 10, [0] * 10
    naphthalene = [(a, b) for a, b in g.edge_index.t().tolist() if a < b]
    five_five = [(3, 0), (0, 1), (1, 2), (2, 9), (9, 3), (8, 4), (4, 5), (5, 6), (6, 7), (7, 8), (3, 8)]
    assert huckel_possible(rules, symbols, charges, list(range(10)), naphthalene)
    assert not huckel_possible(rules, symbols, charges, list(range(10)), five_five)


def _gradient(smiles: str, task: str = "graph"):
    from gradleak_graph.features import CHEMICAL, mol_graph
    from gradleak_graph.models import GraphClassifier

    torch.manual_seed(0)
    model = GraphClassifier(CHEMICAL, 2, "gcn", 64, 64, task=task)
    g = mol_graph(smiles)
    out = model(g.x, g.edge_index, torch.zeros(g.num_nodes, dtype=torch.long))
    y = torch.ones(len(out), dtype=torch.long)
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), list(model.parameters()))
    return model, g, dict(zip([n for n, _ in model.named_parameters()], grads))


def _true_rows(model, g):
    """Readout rows of the true graph keyed like the 2-hop stage, with each node's 1-hop block as its own id."""
    with torch.no_grad():
        rows = model.readout_input(g.x, g.edge_index)
    adj: list[list[int]] = [[] for _ in range(g.num_nodes)]
    for a, b in g.edge_index.t().tolist():
        adj[a].append(b)
    # Nodes with equal rows get one key (a 2-hop type); the key's block is the first such node.
    keys, first = [], {}
    for i in range(g.num_nodes):
        k = tuple(round(v, 4) for v in rows[i].tolist())
        first.setdefault(k, i)
        keys.append(first[k])
    return {(keys[i], tuple(sorted(keys[j] for j in adj[i]))): rows[i] for i in range(g.num_nodes)}, keys


def test_two_hop_shares_are_the_node_multiplicities():
    """Toluene: ring CH types occur twice (ortho, meta) or once; the shares give n = 7 and those counts."""
    from gradleak_graph.counts import two_hop_shares

    model, g, grads = _gradient("Cc1ccccc1")
    rows, keys = _true_rows(model, g)
    # A decoy row (a perturbed copy of a true row) must get share 0.
    decoy = next(iter(rows.values())) * 1.1 + 0.05
    shares = two_hop_shares(model, {**rows, (99, ()): decoy}, grads["readout.0.weight"], grads["readout.4.bias"], 30)
    assert shares is not None and shares.n_min == 7
    counts = shares.counts(7)
    expected = {k: keys.count(k[0]) for k in rows}
    assert {k: counts[shares.group[k]] for k in rows} == expected
    assert counts[shares.group[(99, ())]] == 0 and not shares.present((99, ()))


def test_two_hop_shares_refuse_inexact_gradients_and_node_tasks():
    from gradleak_graph.counts import two_hop_shares

    model, g, grads = _gradient("Cc1ccccc1")
    rows, _ = _true_rows(model, g)
    w0 = grads["readout.0.weight"]
    noisy = w0 + 1e-2 * w0.std() * torch.randn(w0.shape, generator=torch.Generator().manual_seed(0))
    assert two_hop_shares(model, rows, noisy, grads["readout.4.bias"], 30) is None
    assert two_hop_shares(model, rows, grads["readout.0.weight"], None, 30) is None
    node_model, g, grads = _gradient("Cc1ccccc1", task="node")
    assert two_hop_shares(node_model, rows, grads["readout.0.weight"], grads["readout.4.bias"], 30) is None


def test_grain_needs_the_valence_rules_on_a_fused_heteroaromatic(smiles_file):
    """A real NCI naphthyridine ester: exact with the valence rules within 3,000 tested 1-hop blocks; without
    them the first-layer filter keeps 144 candidate atoms (10 distinct true ones) and the budget is exceeded."""
    path = smiles_file(["CCOC(=O)C1=CN=C2N=C(N)C=CC2=C1O 1"])
    res = gradleak.run("graph/gcn-molecules", "grain", data=path, device="cpu", sets={"max_blocks": 3_000})
    assert res.per_sample[0]["exact"] == 1.0
    off = gradleak.run("graph/gcn-molecules", "grain", data=path, device="cpu",
                       sets={"max_blocks": 3_000, "valence": False})
    assert off.per_sample[0]["status"] == "failed: budget"


def test_grain_reads_the_node_count_from_the_shares(molecules):
    from gradleak_graph.cases import GCNMolecules
    from gradleak_graph.grain import Grain

    case = GCNMolecules()
    truth = gradleak.Batch(molecules.data[3:4], molecules.labels[3:4], "graph")
    model = case.build_model(torch.Generator().manual_seed(1))
    loss = case.loss(case.forward(model, truth), truth.labels)
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    view = AttackerView(model=model, loss=case.loss, forward=case.forward, modality=None,  # type: ignore[arg-type]
                        threat=None, sample_shape=(), num_classes=2, batch_size=1,  # type: ignore[arg-type]
                        generator=torch.Generator())
    rec = Grain().reconstruct(Update(grads, "gradient", 1), view)
    assert rec.info["nodes_from_shares"] == truth.data[0].num_nodes
    assert rec.batch.data[0].num_nodes == truth.data[0].num_nodes and rec.objective < 1e-5
