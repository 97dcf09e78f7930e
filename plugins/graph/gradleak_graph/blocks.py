"""GRAIN's first two stages: candidate node features, then 1-hop building blocks.

Drencheva et al., "GRAIN: Exact Graph Reconstruction from Gradients", ICLR 2025 (``node_filtering.py``,
``generate_deg1s`` in the official code).

1. Node features are enumerated one feature group at a time: every kept prefix is extended by each value of
   the next one-hot group and kept when it lies in the row space of the first layer's weight gradient
   restricted to the columns seen so far (the truncation of a row space is the row space of the truncation,
   so true prefixes always pass).
2. For each candidate centre ``c`` of degree ``d`` (read from its degree one-hot), every multiset of ``d``
   candidate neighbours is a possible 1-hop neighbourhood; its layer-1 embedding ``h_c`` is computed exactly
   (GCN coefficients ``1/sqrt((d_i+1)(d_j+1))`` from the encoded degrees; GAT attention over the star) and the
   block is kept when ``h_c`` lies in the span of the second layer's weight gradient. Centres go by increasing
   degree and a processed candidate is offered as a neighbour only to centres its own kept blocks can see
   (see :func:`generate_blocks`); for molecules, the valence rules of :mod:`gradleak_graph.chemistry` drop
   impossible atoms and blocks first. Blocks whose neighbours centre no block listing them back are dropped,
   to a fixed point.
3. 1-hop blocks are glued into 2-hop blocks and tested against the readout's first layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import itertools
import math
import time
from collections import Counter

import torch

from gradleak import AttackFailed

from .chemistry import Valence
from .features import FeatureSpec
from .spans import Span


@dataclass(frozen=True)
class Block:
    """A 1-hop building block: centre candidate index and the sorted multiset of neighbour candidate indices."""

    centre: int
    neighbours: tuple[int, ...]


def _check_time(deadline: float | None, stage: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise AttackFailed("budget", f"time limit reached while {stage}")


def filter_nodes(grad1: torch.Tensor, spec: FeatureSpec, rank_tol: float, tol: float, limit: int,
                 deadline: float | None = None) -> torch.Tensor:
    """Feature rows ``(m, dim)`` in the span of ``grad1`` (``(width, dim)``), built group by group."""
    dtype, device = torch.float64, grad1.device
    prefixes = torch.zeros((1, 0), dtype=dtype, device=device)
    col = 0
    for group in spec.groups:
        k = len(group.values)
        eye = torch.eye(k, dtype=dtype, device=device)
        ext = torch.cat([prefixes.repeat_interleave(k, 0), eye.repeat(len(prefixes), 1)], dim=1)
        col += k
        _check_time(deadline, "filtering node features")
        span = Span.of(grad1[:, :col], rank_tol)
        keep = torch.cat([span.contains(chunk, tol) for chunk in ext.split(10_000)])
        prefixes = ext[keep]
        if len(prefixes) > limit:
            raise AttackFailed("budget", f"{len(prefixes)} candidate node prefixes after group '{group.name}' "
                                         f"exceed the limit of {limit}")
    return prefixes


def star_embeddings(model, spec: FeatureSpec, nodes: torch.Tensor, centres: torch.Tensor,
                    neighbours: torch.Tensor) -> torch.Tensor:
    """Layer-1 embeddings of the centres of ``P`` stars (``centres (P,)``, ``neighbours (P, d)``), one model call.

    The stars are disjoint copies in one graph; GCN coefficients use the degrees the node features encode.
    """
    p, d = neighbours.shape
    ids = torch.cat([centres[:, None], neighbours], dim=1)  # (P, d + 1), centre first
    x = nodes[ids.flatten()].to(next(model.parameters()).dtype)
    base = (torch.arange(p, device=x.device) * (d + 1))[:, None]
    leaf = (base + torch.arange(1, d + 1, device=x.device)[None, :]).flatten()
    hub = base.expand(p, d).flatten()
    ei = torch.stack([torch.cat([leaf, hub]), torch.cat([hub, leaf])])
    with torch.no_grad():
        h1, _ = model.embed(x, ei, spec.degree(x))
    return h1[base.flatten()]


def _multisets(pool: torch.Tensor, d: int, chunk: int):
    """All multisets of ``d`` elements of ``pool`` (sorted index tuples), in chunks of bounded memory."""
    if d == 0:
        yield torch.zeros((1, 0), dtype=torch.long)
        return
    n = len(pool)
    if d == 1:
        yield from pool[:, None].split(chunk)
        return
    # Fix the first (smallest) position; the rest is a multiset of d-1 elements from pool[i:].
    for i in range(n):
        rest = torch.combinations(torch.arange(i, n), d - 1, with_replacement=True).reshape(-1, d - 1)
        both = torch.cat([torch.full((len(rest), 1), i, dtype=torch.long), rest], dim=1)
        yield from pool[both].split(chunk)


def generate_blocks(model, spec: FeatureSpec, nodes: torch.Tensor, span2: Span, tol: float,
                    limit: int, deadline: float | None = None,
                    valence: Valence | None = None) -> tuple[torch.Tensor, list[Block]]:
    """Candidate nodes that centre a block and the 1-hop blocks whose centre embedding passes ``span2``.

    Centres are processed by increasing degree. A true neighbour ``j`` of a true centre ``c`` has ``c`` among
    the neighbours of its own true block, so once ``j`` has been processed as a centre, ``j`` is offered to
    later centres ``c`` only if one of ``j``'s kept blocks contains ``c`` (GRAIN's compatibility condition of
    the 2-hop gluing, applied while enumerating). Leaves and low-degree atoms, which have few blocks, thereby
    prune the neighbour pools of high-degree centres, whose multisets are the expensive ones. With
    ``valence`` (molecules), blocks breaking the valence rules of :mod:`gradleak_graph.chemistry` are dropped
    before the span test. ``limit`` bounds the span-tested blocks; ten times as many may be enumerated.
    """
    degree = spec.degree(nodes).tolist()
    alive = list(range(len(nodes))) if valence is None else [j for j in range(len(nodes)) if valence.possible[j]]
    order = sorted(alive, key=lambda c: (degree[c], c))
    partners: dict[int, set[int]] = {}  # processed centre -> candidates in its kept blocks
    kept: list[Block] = []
    tested = enumerated = 0
    for c in order:
        d = degree[c]
        pool = torch.tensor([j for j in alive if degree[j] >= 1 and (j not in partners or c in partners[j])],
                            dtype=torch.long)
        count = math.comb(len(pool) + d - 1, d) if d else 1
        if d and len(pool) == 0:
            partners[c] = set()
            continue
        enumerated += count
        if enumerated > 10 * limit:
            raise AttackFailed("budget", f"more than {10 * limit} candidate 1-hop blocks to enumerate; the "
                                         f"first-layer filter kept {len(alive)} node candidates")
        mine: list[Block] = []
        for combos in _multisets(pool, d, 8192):
            _check_time(deadline, "testing 1-hop blocks")
            if valence is not None:
                combos = combos[valence.blocks_ok(c, combos)]
            tested += len(combos)
            if tested > limit:
                raise AttackFailed("budget", f"more than {limit} candidate 1-hop blocks to test; the first-layer "
                                             f"filter kept {len(alive)} node candidates")
            if len(combos) == 0:
                continue
            centre = torch.full((len(combos),), c, dtype=torch.long)
            ok = span2.contains(star_embeddings(model, spec, nodes, centre, combos.to(nodes.device)), tol)
            mine += [Block(c, tuple(nb)) for nb in combos[ok.cpu()].tolist()]
        partners[c] = {j for b in mine for j in b.neighbours}
        kept += mine
    alive, blocks = _consistent(kept)
    keep_index = {c: i for i, c in enumerate(alive)}
    renamed = [Block(keep_index[b.centre], tuple(keep_index[j] for j in b.neighbours)) for b in blocks]
    return nodes[alive], renamed


def _consistent(blocks: list[Block]) -> tuple[list[int], list[Block]]:
    """Drop, to a fixed point, blocks with a neighbour ``j`` that centres no kept block listing the centre.

    A candidate that centres no block is a false positive of the first-layer filter; so is a block whose
    neighbour could never see the centre back. Both removals only discard what the true graph cannot use.
    """
    while True:
        partners: dict[int, set[int]] = {}
        for b in blocks:
            partners.setdefault(b.centre, set()).update(b.neighbours)
        still = [b for b in blocks if all(b.centre in partners.get(j, ()) for j in b.neighbours)]
        if len(still) == len(blocks):
            return sorted(partners), blocks
        blocks = still


def generate_two_hop(model, spec: FeatureSpec, nodes: torch.Tensor, blocks: list[Block], span3: Span, tol: float,
                     limit: int, deadline: float | None = None,
                     rows_out: dict[tuple[int, tuple[int, ...]], torch.Tensor] | None = None
                     ) -> dict[int, list[Counter]]:
    """Per 1-hop block, the multisets of neighbour blocks whose 2-hop embedding passes the readout span.

    The readout input ``[x_c, h2_c]`` of a node depends only on its own 1-hop block and its neighbours' 1-hop
    blocks (not on how their further neighbours connect), so it is computed exactly on a tree: the centre,
    its neighbours, and each neighbour's other neighbours as leaves (GCN coefficients from encoded degrees).
    GRAIN glues 1-hop blocks into 2-hop blocks the same way and filters them against the next layer.
    ``rows_out``, when given, receives the readout input of each kept 2-hop block, keyed by
    ``(block, sorted neighbour blocks)``.
    """
    compatible: dict[tuple[int, int], list[int]] = {}
    for j, b in enumerate(blocks):
        for t in set(b.neighbours):
            compatible.setdefault((b.centre, t), []).append(j)
    proposals: list[tuple[int, tuple[int, ...]]] = []
    for i, b in enumerate(blocks):
        groups = Counter(b.neighbours)
        per_type = []
        for t, k in sorted(groups.items()):
            options = compatible.get((t, b.centre), [])
            per_type.append(list(itertools.combinations_with_replacement(options, k)))
        for choice in itertools.product(*per_type):
            proposals.append((i, tuple(j for part in choice for j in part)))
            if len(proposals) % 4096 == 0:
                _check_time(deadline, "gluing 2-hop blocks")
            if len(proposals) > limit:
                raise AttackFailed("budget", f"more than {limit} candidate 2-hop blocks")
    valid: dict[int, list[Counter]] = {}
    dtype = next(model.parameters()).dtype
    for start in range(0, len(proposals), 2048):
        chunk = proposals[start:start + 2048]
        _check_time(deadline, "testing 2-hop blocks")
        types, src, dst, centres = [], [], [], []
        for i, nbs in chunk:
            b = blocks[i]
            root = len(types)
            centres.append(root)
            types.append(b.centre)
            for j in nbs:
                nb = blocks[j]
                v = len(types)
                types.append(nb.centre)
                src += [root, v]
                dst += [v, root]
                rest = Counter(nb.neighbours)
                rest[b.centre] -= 1
                for t in rest.elements():
                    w = len(types)
                    types.append(t)
                    src += [v, w]
                    dst += [w, v]
        x = nodes[torch.tensor(types, device=nodes.device)].to(dtype)
        ei = torch.tensor([src, dst], dtype=torch.long, device=x.device).reshape(2, -1)
        with torch.no_grad():
            rows = model.readout_input(x, ei, spec.degree(x))[torch.tensor(centres, device=x.device)]
        ok = span3.contains(rows, tol).tolist()
        for k, ((i, nbs), good) in enumerate(zip(chunk, ok)):
            if good:
                valid.setdefault(i, []).append(Counter(nbs))
                if rows_out is not None:
                    rows_out[(i, tuple(sorted(nbs)))] = rows[k].detach()
    return valid


def prune_two_hop(valid: dict[int, list[Counter]]) -> dict[int, list[Counter]]:
    """Drop 1-hop blocks without a kept 2-hop block, and 2-hop blocks using dropped ones, to a fixed point."""
    valid = {i: list(v) for i, v in valid.items() if v}
    while True:
        kept = {i: [e for e in v if all(j in valid for j in e)] for i, v in valid.items()}
        kept = {i: v for i, v in kept.items() if v}
        if len(kept) == len(valid) and all(len(kept[i]) == len(valid[i]) for i in kept):
            return kept
        valid = kept
