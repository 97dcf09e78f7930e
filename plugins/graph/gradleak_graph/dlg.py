"""graph-dlg: DLG over continuous node features and a relaxed adjacency (GRAIN's baseline family).

Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019, as adapted to graphs by GRAIN's ``dlg.py``
(Drencheva et al., ICLR 2025): optimise node features ``X`` (one logit vector per one-hot group, softmax) and a
symmetric adjacency ``A = sigmoid(S + S^T)`` so that the model's gradient matches the observed one (L2), with
the label optimised jointly when unknown; decode by per-group argmax and ``A > 0.5``.

The GCN and GAT layers are evaluated densely with the model's own parameters (GCN: ``D^-1/2 (A+I) D^-1/2``;
GAT: attention logits plus ``log A_ij``), so the relaxation is differentiable in ``A``. The attacker must
guess the number of nodes; we take the numerical rank of the readout's first-layer gradient (the number of
distinct 2-hop node embeddings, a lower bound that is exact for most molecules). The shared engine is not
used: it optimises tensors of a fixed sample shape, while a graph also carries an adjacency of unknown size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gradleak import AttackerView, Batch, Reconstruction, Update
from gradleak.components import Attack
from gradleak.config import param, require_positive

from .grain import _graph
from .modality import GraphList
from .scoring import observed
from .spans import Span


@dataclass(frozen=True)
class GraphDLGConfig:
    """Optimisation settings of the baseline."""

    iterations: int = param(300, "Adam steps (--budget)")
    lr: float = param(0.05, "Adam learning rate")
    rank_tol: float = param(1e-5, "relative singular-value cut used to guess the number of nodes")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "rank_tol")


def dense_readout_input(model, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """``[x, h2]`` per node for a dense weighted adjacency ``adj`` (no self loops), differentiable in both."""
    n = x.shape[0]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    if model.arch == "gcn":
        a = adj + eye
        d = a.sum(1).rsqrt()
        norm = d[:, None] * a * d[None, :]
        h1 = torch.relu(norm @ model.conv1.lin(x) + model.conv1.bias)
        h2 = norm @ model.conv2.lin(h1) + model.conv2.bias
    else:
        h1 = torch.relu(_dense_gat(model.conv1, x, adj + eye))
        h2 = _dense_gat(model.conv2, h1, adj + eye)
    return torch.cat([x, h2], dim=1)


def _dense_gat(conv, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    heads, out = conv.heads, conv.out_channels
    h = conv.lin(x).view(-1, heads, out)
    src = (h * conv.att_src).sum(-1)
    dst = (h * conv.att_dst).sum(-1)
    logits = F.leaky_relu(dst[:, None, :] + src[None, :, :], conv.negative_slope)
    alpha = torch.softmax(logits + torch.log(a.clamp_min(1e-12))[:, :, None], dim=1)
    res = torch.einsum("ijh,jhc->ihc", alpha, h)
    res = res.reshape(-1, heads * out) if conv.concat else res.mean(1)
    return res + conv.bias


class GraphDLG(Attack):
    """DLG on graphs: gradient matching over relaxed node features and adjacency (GRAIN's baseline).

    Zhu et al., NeurIPS 2019; graph adaptation as in Drencheva et al., ICLR 2025. Number of nodes guessed from
    the readout gradient's rank; label optimised jointly unless known.
    """

    name = "graph-dlg"
    modalities = frozenset({"graph"})
    Config = GraphDLGConfig
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019 (graph baseline of GRAIN, ICLR 2025)"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        model = view.model
        spec = model.spec
        names = model.span_layers()
        n = max(1, Span.of(update.tensors[names["readout"]], c.rank_tol).rank)
        target = observed(update.tensors, model)
        pnames = [k for k, _ in model.named_parameters() if k in target]
        params = [p for k, p in model.named_parameters() if k in target]
        tgt = [target[k] for k in pnames]
        gen = view.generator
        dev, dtype = view.device, params[0].dtype
        feat = torch.randn(n, spec.dim, generator=gen, device=gen.device, dtype=dtype).to(dev).requires_grad_(True)
        s = torch.randn(n, n, generator=gen, device=gen.device, dtype=dtype).to(dev).requires_grad_(True)
        lab = torch.randn(1, view.num_classes or 2, generator=gen, device=gen.device, dtype=dtype).to(dev)
        lab.requires_grad_(True)
        variables = [feat, s] + ([lab] if view.labels is None else [])
        opt = torch.optim.Adam(variables, lr=c.lr)
        groups = [len(g.values) for g in spec.groups]
        mask = 1.0 - torch.eye(n, dtype=dtype, device=dev)
        iterations = budget or c.iterations
        best = (float("inf"), None)
        for step in range(iterations):
            opt.zero_grad()
            x = torch.cat([torch.softmax(p, dim=1) for p in feat.split(groups, dim=1)], dim=1)
            adj = torch.sigmoid(s + s.T) * mask
            logits = model.readout(dense_readout_input(model, x, adj)).mean(0, keepdim=True)
            y = view.labels[:1].to(dev) if view.labels is not None else torch.softmax(lab, dim=1)
            loss = view.loss(logits, y)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            obj = sum(((g if g is not None else torch.zeros_like(t)) - t).pow(2).sum() for g, t in zip(grads, tgt))
            obj.backward()
            opt.step()
            value = float(obj.detach())
            if value < best[0]:
                best = (value, (feat.detach().clone(), s.detach().clone()))
            view.report(step + 1, iterations, value)
        f, sv = best[1]
        x = torch.cat([F.one_hot(p.argmax(1), p.shape[1]).to(dtype) for p in f.split(groups, dim=1)], dim=1)
        adj = (torch.sigmoid(sv + sv.T) * mask) > 0.5
        edges = [(i, j) for i in range(n) for j in range(i + 1, n) if bool(adj[i, j])]
        label = int(view.labels[0]) if view.labels is not None else int(lab.argmax())
        graph = _graph(x, edges, model)
        return Reconstruction(Batch(GraphList([graph]), torch.tensor([label], device=dev), "graph"),
                              objective=best[0], info={"nodes_guessed": n, "iterations": iterations})


ATTACKS = [GraphDLG]
