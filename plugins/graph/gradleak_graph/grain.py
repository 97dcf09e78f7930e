"""GRAIN: exact graph reconstruction from the gradient of a GCN or GAT (Drencheva et al., ICLR 2025)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from gradleak import AttackFailed, AttackerView, Batch, ConfigError, Reconstruction, Update
from gradleak.components import Attack
from gradleak.config import param

from .assemble import Assembler
from .blocks import filter_nodes, generate_blocks, generate_two_hop, prune_two_hop
from .modality import GraphList
from .scoring import gradient_distance, observed
from .spans import Span

log = logging.getLogger(__name__)

#: Why a span stage can come up empty: the true graph always passes it when the rank conditions hold.
_RANK = ("; the rank condition fails (more nodes than a layer's width, units dead for some nodes, or a singular "
         "normalised adjacency), so the graph cannot be reconstructed exactly")


@dataclass(frozen=True)
class GrainConfig:
    """Tolerances and budgets of GRAIN (span test as in the official ``config.yaml``)."""

    span_tol: float = param(1e-3, "accept a normalised vector when its residual off the gradient span is below this")
    rank_tol: float = param(1e-5, "singular values below rank_tol * s_max are noise (float32 gradients)")
    accept: float = param(1e-3, "stop at a graph whose relative gradient distance is below this")
    max_candidates: int = param(100_000, "most node-feature prefixes kept by the first-layer filter")
    max_blocks: int = param(300_000, "most candidate 1-hop blocks tested against the second layer")
    max_leaves: int = param(2000, "most complete graphs with distinct 2-hop block multisets scored (--budget)")
    time_limit: float = param(25.0, "seconds for the whole attack; assembly returns the best graph found by then")
    max_nodes: int = param(30, "largest graph searched, if above 3x the readout rank (GRAIN's bound)")
    ring_prior: bool = param(True, "molecules: among graphs matching the gradient equally, prefer 5- and 6-rings")

    def validate(self, owner: str) -> None:
        for key in ("span_tol", "rank_tol", "accept", "max_candidates", "max_blocks", "max_leaves", "time_limit",
                    "max_nodes"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{owner}: {key} must be > 0, got {getattr(self, key)}")


class Grain(Attack):
    """GRAIN: span-filter node features, then 1-hop blocks, then assemble the graph by gradient distance.

    Drencheva, Petrov, Baader, Dimitrov, Vechev, "GRAIN: Exact Graph Reconstruction from Gradients", ICLR 2025.
    One graph per update (the paper's setting). Needs node features made of one-hot groups including the
    degree, and the rank conditions (fewer nodes than the layer widths, an invertible normalised adjacency):
    when a gradient's rank reaches its width, or a span stage keeps nothing (which cannot happen to the true
    graph when the conditions hold), the batch fails with reason ``rank``; a search past ``max_candidates``,
    ``max_blocks`` or ``time_limit`` before any graph is complete fails with ``budget``. Never a guessed graph
    in those cases. Labels are tried exhaustively when unknown, as in the official scorer. Graphs that a
    2-layer GNN cannot tell apart (equal multisets of 2-hop neighbourhoods, e.g. covers of a smaller graph)
    give the same gradient; among those the search prefers 5- and 6-membered rings for molecules
    (``ring_prior``), and otherwise the smallest.
    """

    name = "grain"
    modalities = frozenset({"graph"})
    Config = GrainConfig
    paper = "Drencheva et al., GRAIN: Exact Graph Reconstruction from Gradients, ICLR 2025"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        start = time.perf_counter()
        deadline = time.monotonic() + c.time_limit
        model = view.model
        spec = getattr(model, "spec", None)
        if spec is None or not hasattr(model, "span_layers"):
            raise AttackFailed("model", "GRAIN needs a gradleak-graph GCN/GAT classifier with a feature layout")
        if view.batch_size != 1:
            raise AttackFailed("batch", f"GRAIN reconstructs one graph per update, this one holds {view.batch_size}")
        if update.num_clients > 1 or update.local_steps * update.epochs > 1:
            raise AttackFailed("protocol", "GRAIN reads one gradient step of one client")
        names = model.span_layers()
        try:
            g1, g2, g3 = (update.tensors[names[k]] for k in ("layer1", "layer2", "readout"))
        except KeyError as exc:
            raise AttackFailed("model", f"the update lacks {exc}") from None
        spans = {k: Span.of(g, c.rank_tol) for k, g in (("layer1", g1), ("layer2", g2), ("readout", g3))}
        for key in ("layer2", "readout"):
            s = spans[key]
            if s.saturated:
                raise AttackFailed("rank", f"the {key} gradient has full rank {s.rank} (width {s.rows}, input "
                                           f"{s.dim}): the graph has too many nodes for the span test")
        nodes = filter_nodes(g1.double(), spec, c.rank_tol, c.span_tol, c.max_candidates, deadline)
        if len(nodes) == 0:
            raise AttackFailed("rank", "no node feature vector lies in the first layer's gradient span" + _RANK)
        nodes, blocks = generate_blocks(model, spec, nodes, spans["layer2"], c.span_tol, c.max_blocks, deadline)
        if not blocks:
            raise AttackFailed("rank", "no 1-hop building block lies in the second layer's gradient span" + _RANK)
        two_hop = prune_two_hop(generate_two_hop(model, spec, nodes, blocks, spans["readout"], c.span_tol,
                                                 c.max_blocks, deadline))
        if not two_hop:
            raise AttackFailed("rank", "no 2-hop building block lies in the readout layer's gradient span" + _RANK)
        target = observed(update.tensors, model)
        labels = [int(view.labels[0])] if view.labels is not None else None

        def score(x: torch.Tensor, edges: list[tuple[int, int]]) -> tuple[float, int]:
            return gradient_distance(view, _graph(x, edges, model), target, labels)

        counts: dict[int, int] = {}
        for i in two_hop:
            counts[blocks[i].centre] = counts.get(blocks[i].centre, 0) + 1
        # Root at the node type with the fewest blocks: fewest branches at the top of the search.
        roots = sorted(counts, key=lambda t: (counts[t], t))[:1]
        asm = Assembler(spec, nodes, blocks, two_hop, score, c.accept, max_leaves=budget or c.max_leaves,
                        time_limit=max(0.0, deadline - time.monotonic()),
                        tie_break=ring_cost if c.ring_prior and spec.is_chemical else None)
        low = max(1, spans["readout"].rank)
        bounds = list(range(low, min(max(3 * low, c.max_nodes), spans["readout"].rows) + 1))
        with torch.enable_grad():
            found = asm.run(roots, bounds)
        info = {"candidates": len(nodes), "blocks": len(blocks), "two_hop": sum(map(len, two_hop.values())),
                "leaves": found.leaves,
                "expansions": found.expansions, "timed_out": found.timed_out,
                "ranks": {k: s.rank for k, s in spans.items()}, "seconds": time.perf_counter() - start}
        if not found.types:
            raise AttackFailed("search", f"no complete graph assembled from {len(blocks)} blocks "
                                         f"({'time limit' if found.timed_out else 'search exhausted'})")
        graph = _graph(nodes[found.types], found.edges, model)
        log.info("grain: %s, gradient distance %.2e", info, found.distance)
        labels_out = torch.tensor([found.label], device=view.device)
        return Reconstruction(Batch(GraphList([graph]), labels_out, "graph"), objective=found.distance, info=info)


def ring_cost(edges: list[tuple[int, int]]) -> float:
    """Rings of a minimum cycle basis whose size is not 5 or 6 (rare in molecules): GRAIN's gradient cannot
    separate 1-WL-equivalent graphs, such as decalin and bicyclopentyl, so a chemical prior picks among them."""
    import networkx as nx

    g = nx.Graph(edges)
    return float(sum(1 for ring in nx.minimum_cycle_basis(g) if len(ring) not in (5, 6)))


def _graph(x: torch.Tensor, edges: list[tuple[int, int]], model: torch.nn.Module):
    from torch_geometric.data import Data

    p = next(model.parameters())
    ei = torch.tensor(edges + [(b, a) for a, b in edges], dtype=torch.long, device=p.device).t().reshape(2, -1)
    return Data(x=x.to(dtype=p.dtype, device=p.device), edge_index=ei)


ATTACKS = [Grain]
