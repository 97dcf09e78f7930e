"""GRAIN: exact graph reconstruction from the gradient of a GCN or GAT (Drencheva et al., ICLR 2025)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import torch

from gradleak import AttackFailed, AttackerView, Batch, Reconstruction, Update
from gradleak.components import Attack
from gradleak.config import param, require_positive

from . import chemistry
from .assemble import Assembler
from .blocks import filter_nodes, generate_blocks, generate_two_hop, prune_two_hop
from .chemistry import Valence
from .counts import two_hop_shares
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
    max_blocks: int = param(300_000, "most candidate 1-hop (and 2-hop) blocks span-tested; ten times as many "
                                     "1-hop multisets may be enumerated for the valence rules")
    max_leaves: int = param(2000, "most complete graphs with distinct 2-hop block multisets scored (--budget)")
    time_limit: float = param(25.0, "seconds for the whole attack; assembly returns the best graph found by then")
    max_nodes: int = param(30, "largest graph searched, if above 3x the readout rank (GRAIN's bound)")
    ring_prior: bool = param(True, "molecules: among graphs matching the gradient equally, prefer 5- and 6-rings")
    valence: bool = param(True, "molecules: drop candidate atoms and 1-hop blocks that break the octet rule; "
                                "among equal-gradient graphs prefer Hückel-aromatic rings")
    counts: bool = param(True, "read each 2-hop block's share of the nodes off the readout gradient and assemble "
                               "exactly that many (graph classification)")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "span_tol", "rank_tol", "accept", "max_candidates", "max_blocks", "max_leaves",
                         "time_limit", "max_nodes")


class Grain(Attack):
    """GRAIN: span-filter node features, then 1-hop blocks, then assemble the graph by gradient distance.

    Drencheva, Petrov, Baader, Dimitrov, Vechev, "GRAIN: Exact Graph Reconstruction from Gradients", ICLR 2025.
    One graph per update (the paper's setting). Needs node features made of one-hot groups including the
    degree, and the rank conditions (fewer nodes than the layer widths, an invertible normalised adjacency):
    when a gradient's rank reaches its width, or a span stage keeps nothing, or the complete assembly search
    finds no graph matching the gradient (none of which can happen to the true graph when the conditions
    hold), the batch fails with reason ``rank``; a search past ``max_candidates``,
    ``max_blocks`` or ``time_limit`` before any graph is complete fails with ``budget``. Never a guessed graph
    in those cases. Labels are tried exhaustively when unknown, as in the official scorer. Graphs that a
    2-layer GNN cannot tell apart (equal multisets of 2-hop neighbourhoods, e.g. covers of a smaller graph)
    give the same gradient; among those the search prefers 5- and 6-membered rings for molecules
    (``ring_prior``), and otherwise the smallest.

    Two additions to the paper, both switchable, keep molecules within a CPU budget of seconds (the paper's
    code takes up to 30 GPU minutes per graph): candidate atoms and 1-hop blocks that break the octet rule
    are dropped before the span tests, and graphs whose aromatic rings break Hückel's rule lose ties
    (``valence``, :mod:`gradleak_graph.chemistry`), and the share of each
    2-hop block among the nodes is solved for from the readout gradient, so the assembly places exactly that
    many nodes of each kind (``counts``, :mod:`gradleak_graph.counts`); when the shares cannot be read
    exactly, or their search finds no graph matching the gradient, the paper's search runs.
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
        valence = Valence(spec, nodes) if c.valence and chemistry.applies(spec) else None
        nodes, blocks = generate_blocks(model, spec, nodes, spans["layer2"], c.span_tol, c.max_blocks, deadline,
                                        valence)
        if not blocks:
            hint = "" if valence is None else " (or an atom breaks the valence rules: try --set valence=false)"
            raise AttackFailed("rank", "no 1-hop building block lies in the second layer's gradient span" + _RANK
                               + hint)
        rows: dict = {}
        two_hop = prune_two_hop(generate_two_hop(model, spec, nodes, blocks, spans["readout"], c.span_tol,
                                                 c.max_blocks, deadline, rows))
        if not two_hop:
            raise AttackFailed("rank", "no 2-hop building block lies in the readout layer's gradient span" + _RANK)
        low = max(1, spans["readout"].rank)
        top = min(max(3 * low, c.max_nodes), spans["readout"].rows)
        shares = None
        if c.counts:
            last_bias = update.tensors.get(f"readout.{len(model.readout) - 1}.bias")
            shares = two_hop_shares(model, {k: rows[k] for k in rows if k[0] in two_hop}, g3, last_bias, top)
        two_hop_all = two_hop
        if shares is not None:
            present = prune_two_hop({i: [e for e in v if shares.present((i, tuple(sorted(e.elements()))))]
                                     for i, v in two_hop.items()})
            if present:
                two_hop = present
            else:
                shares = None
        target = observed(update.tensors, model)
        labels = [int(view.labels[0])] if view.labels is not None else None

        def score(x: torch.Tensor, edges: list[tuple[int, int]]) -> tuple[float, int]:
            return gradient_distance(view, _graph(x, edges, model), target, labels)

        def fewest_blocks(kept: dict[int, list[Counter]]) -> dict[int, int]:
            return Counter(blocks[i].centre for i in kept)

        tie_break = _chemical_prior(spec, nodes, c.ring_prior, valence is not None) if spec.is_chemical else None
        found = None
        if shares is not None:
            # Exactly the node counts the shares allow (and multiples: covers give the same gradient); root
            # at the rarest node type, which has the fewest places in the graph.
            asm = Assembler(spec, nodes, blocks, two_hop, score, c.accept, max_leaves=budget or c.max_leaves,
                            time_limit=max(0.0, deadline - time.monotonic()), tie_break=tie_break, shares=shares)
            asm.set_caps(shares.n_min)
            rare, counts = asm.type_cap, fewest_blocks(two_hop)
            roots = sorted(counts, key=lambda t: (rare.get(t, 0) or len(nodes) + 1, counts[t], t))[:1]
            with torch.enable_grad():
                found = asm.run(roots, list(range(shares.n_min, top + 1, shares.n_min)))
        if found is None or (found.distance >= c.accept and not found.timed_out):
            # The paper's search (also when the share-guided one found no graph matching the gradient):
            # root at the node type with the fewest blocks, fewest branches at the top of the search.
            counts = fewest_blocks(two_hop_all)
            roots = sorted(counts, key=lambda t: (counts[t], t))[:1]
            asm = Assembler(spec, nodes, blocks, two_hop_all, score, c.accept,
                            max_leaves=budget or c.max_leaves, time_limit=max(0.0, deadline - time.monotonic()),
                            tie_break=tie_break)
            with torch.enable_grad():
                plain = asm.run(roots, list(range(low, top + 1)))
            if found is None or plain.distance < found.distance:
                found = plain
        info = {"candidates": len(nodes), "blocks": len(blocks), "two_hop": sum(map(len, two_hop.values())),
                "nodes_from_shares": shares.n_min if shares is not None else None, "leaves": found.leaves,
                "expansions": found.expansions, "timed_out": found.timed_out,
                "ranks": {k: s.rank for k, s in spans.items()}, "seconds": time.perf_counter() - start}
        if not found.types:
            raise AttackFailed("search", f"no complete graph assembled from {len(blocks)} blocks "
                                         f"({'time limit' if found.timed_out else 'search exhausted'})")
        if found.distance >= c.accept and not found.timed_out and found.leaves < (budget or c.max_leaves):
            # The whole search space was scored: the true graph is not in it, so a span stage dropped one
            # of its blocks. Only a search stopped by its budget returns its best graph (as the paper does).
            raise AttackFailed("rank", f"no graph assembled from the kept blocks matches the gradient (best "
                                       f"relative distance {found.distance:.2g})" + _RANK)
        graph = _graph(nodes[found.types], found.edges, model)
        log.info("grain: %s, gradient distance %.2e", info, found.distance)
        labels_out = torch.tensor([found.label], device=view.device)
        return Reconstruction(Batch(GraphList([graph]), labels_out, "graph"), objective=found.distance, info=info)


def _chemical_prior(spec, nodes: torch.Tensor, rings: bool, aromaticity: bool):
    """Tie-break among graphs that match the gradient equally (lower is better, 0 ideal): the ring cost, plus
    10 when an aromatic ring system cannot hold 4k + 2 pi electrons (:func:`chemistry.huckel_possible`)."""
    if not rings and not aromaticity:
        return None
    rules = Valence(spec, nodes) if aromaticity else None
    described = [spec.describe(row) for row in nodes.cpu()]
    symbols, charges = [d["atom"] for d in described], [int(d["charge"]) for d in described]

    def cost(types: list[int], edges: list[tuple[int, int]]) -> float:
        out = ring_cost(edges) if rings else 0.0
        if rules is not None and not chemistry.huckel_possible(rules, symbols, charges, types, edges):
            out += 10.0
        return out

    return cost


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
