"""GRAIN's models: graph and node classification, and the span facts the attack rests on."""

from __future__ import annotations

import pytest
import torch

from gradleak_graph.features import CHEMICAL, mol_graph
from gradleak_graph.models import GraphClassifier
from gradleak_graph.spans import Span


@pytest.mark.parametrize("arch", ["gcn", "gat"])
@pytest.mark.parametrize("task", ["graph", "node"])
def test_true_inputs_lie_in_the_gradient_spans_and_perturbed_ones_do_not(arch, task):
    torch.manual_seed(0)
    g = mol_graph("OC(=O)C1=CC=CN=C1")  # nicotinic acid, 9 atoms
    model = GraphClassifier(CHEMICAL, 2, arch, task=task)  # the paper's widths: narrow layers lose rank
    out = model(g.x, g.edge_index, torch.zeros(g.num_nodes, dtype=torch.long))
    assert out.shape == ((1, 2) if task == "graph" else (g.num_nodes, 2))
    y = torch.tensor([1]) if task == "graph" else torch.arange(g.num_nodes) % 2
    loss = torch.nn.functional.cross_entropy(out, y)
    names = model.span_layers()
    params = dict(model.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names.values()])))
    h1, h2 = model.embed(g.x, g.edge_index)
    spans = {k: Span.of(v, 1e-5) for k, v in grads.items()}
    assert spans["layer1"].distance(g.x).max() < 1e-4
    assert spans["layer2"].distance(h1).max() < 1e-4
    assert spans["readout"].distance(torch.cat([g.x, h2], 1)).max() < 1e-4
    wrong = g.x.clone()
    wrong[0] = 0
    wrong[0, 12] = 1.0  # an 'other' atom instead of oxygen
    assert spans["layer1"].distance(wrong[:1]) > 1e-2
