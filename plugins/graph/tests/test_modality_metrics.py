"""The graph modality and the metrics on hand-made graphs with known answers."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Data

import gradleak
from gradleak import Batch
from gradleak_graph.features import mol_graph
from gradleak_graph.metrics import GSM, EdgeF1, Exact, NodeAcc
from gradleak_graph.modality import Graph, GraphList


def _permuted(g, perm):
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    return Data(x=g.x[perm], edge_index=inv[g.edge_index])


def _batch(*graphs):
    return Batch(GraphList(graphs), torch.zeros(len(graphs), dtype=torch.long), "graph")


def test_metrics_on_a_permuted_copy_and_on_a_broken_copy():
    g = mol_graph("CC(=O)NC1=CC=C(O)C=C1")  # paracetamol, 11 atoms
    same = _permuted(g, torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0)))
    keep = [k for k in range(g.edge_index.shape[1]) if set(g.edge_index[:, k].tolist()) != {0, 1}]
    broken = Data(x=g.x, edge_index=g.edge_index[:, keep])  # one bond (of 11) removed
    truth = _batch(g, g)
    recon = _batch(same, broken)
    assert Exact()(recon, truth).tolist() == [1.0, 0.0]
    assert EdgeF1()(recon, truth).tolist() == pytest.approx([1.0, 2 * 10 / 21])
    assert GSM()(recon, truth)[0] == pytest.approx(1.0) and 0.3 < float(GSM()(recon, truth)[1]) < 1.0
    acc = NodeAcc()(recon, truth)
    assert acc[0] == 1.0 and acc[1] == pytest.approx(9 / 11)  # the two atoms of the lost bond are misplaced


def test_different_features_are_not_exact():
    a, b = mol_graph("CCO"), mol_graph("CCN")
    assert Exact()(_batch(b), _batch(a)).tolist() == [0.0]
    # C and C keep their features and their matched neighbours; O became N.
    assert NodeAcc()(_batch(b), _batch(a)).tolist() == pytest.approx([2 / 3])


def test_modality_matching_select_concat_and_save(tmp_path):
    m = Graph()
    a, b = mol_graph("CCO"), mol_graph("c1ccccc1")
    truth, recon = _batch(a, b), _batch(b, a)
    cost = m.pairwise_cost(recon, truth)
    assert cost[0, 1] == 0 and cost[1, 0] == 0 and cost[0, 0] > 0.5
    assert m.select(truth, torch.tensor([1])).data[0] is b
    assert len(m.concat([truth, recon])) == 4
    paths = m.save(truth, tmp_path, "truth")
    rows = json.loads(open(paths["truth"]).read())
    assert rows[0]["edges"] == [[0, 1], [1, 2]] and len(rows[1]["x"]) == 6 and rows[1]["smiles"] == "c1ccccc1"
    assert m.is_success({"exact": 1.0}) and not m.is_success({"exact": 0.0})


def test_plugin_registers_everything_it_promises():
    reg = gradleak.registry()
    for kind, names in {"case": ["graph/gcn-molecules", "graph/gat-molecules", "graph/gcn-citation"],
                        "attack": ["grain", "graph-dlg"], "metric": ["exact", "gsm", "node_acc", "edge_f1"]}.items():
        for name in names:
            assert reg.get(kind, name, modality="graph").plugin == "graph"
    assert issubclass(reg.modality("graph"), Graph) and reg.modality("graph").plugin == "graph"
