"""GRAIN's last stage: assemble building blocks into a graph, depth first, ranked by gradient distance.

Drencheva et al., ICLR 2025 (``build_molecule_from_bbs_DFS``). Our search grows one graph from a root block:
it repeatedly takes the oldest node whose degree (encoded in its features) is not yet reached, chooses a 1-hop
block with that centre whose neighbour multiset contains the node's present neighbours, and attaches the
missing neighbours either as new nodes or to existing open nodes of the right type (ring closures). A branch
is pruned when a node that becomes complete has a neighbourhood that is no kept 1-hop block, or when the
blocks of a complete node's complete neighbours fit no kept 2-hop block (1-hop blocks glued and filtered
against the readout's first-layer gradient, :func:`gradleak_graph.blocks.generate_two_hop`). Complete
graphs are scored by gradient distance; the search stops at the first graph
below ``accept`` (the true graph scores at float precision), or when its leaf or time budget is spent.
With :class:`gradleak_graph.counts.Shares` (how many nodes of each 2-hop kind the readout gradient shows), only
graphs of exactly that size are completed, and a branch is pruned as soon as it uses a node type, a 1-hop block
or a fully determined 2-hop block more often than the shares allow.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .blocks import Block
from .counts import Shares
from .features import FeatureSpec


@dataclass
class SearchResult:
    """The best complete graph found (node candidate indices and edges), its distance and search counters."""

    types: list[int] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    distance: float = float("inf")
    label: int = 0
    leaves: int = 0
    expansions: int = 0
    timed_out: bool = False


class _Stop(Exception):
    pass


class Assembler:
    """Depth-first assembly of candidate nodes and building blocks into graphs (see the module docstring)."""

    def __init__(self, spec: FeatureSpec, nodes: torch.Tensor, blocks: list[Block], two_hop: dict[int, list[Counter]],
                 score: Callable[[torch.Tensor, list[tuple[int, int]]], tuple[float, int]], accept: float,
                 max_leaves: int, time_limit: float,
                 tie_break: Callable[[list[int], list[tuple[int, int]]], float] | None = None,
                 shares: Shares | None = None) -> None:
        self.nodes, self.two_hop, self.score, self.accept = nodes, two_hop, score, accept
        self.tie_break, self.best_tie = tie_break, float("inf")
        self.max_nodes, self.min_leaf = 0, 1
        self.max_leaves, self.deadline = max_leaves, time.monotonic() + time_limit
        self.degree = spec.degree(nodes).tolist()
        self.by_centre: dict[int, list[tuple[int, Counter]]] = {}
        self.block_id: dict[tuple[int, tuple[int, ...]], int] = {}
        for i, b in enumerate(blocks):
            if i in two_hop:
                self.by_centre.setdefault(b.centre, []).append((i, Counter(b.neighbours)))
                self.block_id[(b.centre, tuple(sorted(b.neighbours)))] = i
        self.result = SearchResult()
        self.scores: dict[tuple, tuple[float, int]] = {}
        # With the 2-hop shares read off the readout gradient: caps on nodes per type, complete nodes per
        # 1-hop block and fully determined nodes per 2-hop group, set per node-count bound in run().
        self.shares = shares
        self.group_type: dict[int, int] = {}
        self.group_block: dict[int, int | None] = {}
        if shares is not None:
            for (b, _), g in shares.group.items():
                self.group_type[g] = blocks[b].centre
                self.group_block[g] = b if self.group_block.get(g, b) == b else None
        self.type_cap: dict[int, int] = {}
        self.block_cap: dict[int, int] | None = None
        self.group_cap: list[int] = []
        # Graph state, mutated and undone by the search: node types, adjacency, block of each complete node.
        self.types: list[int] = []
        self.adj: list[set[int]] = []
        self.blk: list[int | None] = []

    # ---------------------------------------------------------------- state helpers
    def _open(self, v: int) -> bool:
        return len(self.adj[v]) < self.degree[self.types[v]]

    def _edges(self) -> list[tuple[int, int]]:
        return [(u, v) for u in range(len(self.adj)) for v in self.adj[u] if u < v]

    def _one_hop_ok(self, u: int) -> bool:
        """A complete node's neighbourhood must be a kept block; an open one must fit inside one."""
        have = Counter(self.types[w] for w in self.adj[u])
        if not self._open(u):
            self.blk[u] = self.block_id.get((self.types[u], tuple(sorted(have.elements()))))
            return self.blk[u] is not None
        return any(all(blk[t] >= k for t, k in have.items()) for _, blk in self.by_centre.get(self.types[u], ()))

    def _two_hop_ok(self, u: int) -> bool:
        """The blocks of a complete node's complete neighbours must fit one of its kept 2-hop blocks."""
        if self.blk[u] is None:
            return True
        have = Counter(self.blk[w] for w in self.adj[u] if self.blk[w] is not None)
        return any(all(entry[j] >= k for j, k in have.items()) for entry in self.two_hop[self.blk[u]])

    # ---------------------------------------------------------------- search
    def run(self, roots: list[int], bounds: list[int]) -> SearchResult:
        """Search from each root type under growing node-count bounds (iterative deepening).

        Local checks cannot tell a ring from its unrolling into a longer chain (their k-hop neighbourhoods
        agree), so the search first looks for small graphs: the true graph has at least as many nodes as the
        readout gradient's rank (one per distinct 2-hop embedding), and GRAIN bounds it by three times the rank.
        """
        previous = 0
        try:
            for bound in bounds:
                # Leaves up to the previous bound were scored in earlier rounds.
                self.max_nodes, self.min_leaf, previous = bound, previous + 1, bound
                if self.shares is not None:
                    self.set_caps(bound)
                for centre in roots:
                    self.types, self.adj, self.blk = [centre], [set()], [None]
                    self._expand()
        except _Stop:
            pass
        return self.result

    def set_caps(self, n: int) -> None:
        """Caps for a graph of exactly ``n`` nodes from the 2-hop shares (see :mod:`gradleak_graph.counts`)."""
        assert self.shares is not None
        self.min_leaf = n
        self.group_cap = self.shares.counts(n)
        self.type_cap, blocks = {}, {}
        for g, m in enumerate(self.group_cap):
            t = self.group_type.get(g)
            if t is not None:
                self.type_cap[t] = self.type_cap.get(t, 0) + m
            b = self.group_block.get(g)
            if b is not None:
                blocks[b] = blocks.get(b, 0) + m
        exact = all(b is not None for b in self.group_block.values())
        self.block_cap = blocks if exact else None

    def _counts_ok(self) -> bool:
        """No node type, 1-hop block or determined 2-hop group used more often than the shares allow."""
        assert self.shares is not None
        types = Counter(self.types)
        if any(k > self.type_cap.get(t, 0) for t, k in types.items()):
            return False
        if self.block_cap is not None:
            used = Counter(b for b in self.blk if b is not None)
            if any(k > self.block_cap.get(b, 0) for b, k in used.items()):
                return False
        groups: Counter = Counter()
        for u, b in enumerate(self.blk):
            if b is None or any(self.blk[w] is None for w in self.adj[u]):
                continue
            g = self.shares.group.get((b, tuple(sorted(self.blk[w] for w in self.adj[u]))))  # type: ignore[type-var]
            if g is None:
                return False
            groups[g] += 1
            if groups[g] > self.group_cap[g]:
                return False
        return True

    def _leaf(self) -> None:
        if len(self.types) < self.min_leaf:
            return
        edges = self._edges()
        # The gradient is a function of the multiset of nodes' 2-hop blocks (a node's block and its
        # neighbours' blocks): graphs sharing it score the same, so each multiset is scored once.
        key = tuple(sorted((self.blk[u], tuple(sorted(self.blk[w] for w in self.adj[u])))  # type: ignore[type-var]
                           for u in range(len(self.types))))
        if key not in self.scores:
            self.result.leaves += 1
            self.scores[key] = self.score(self.nodes[self.types], edges)
        dist, label = self.scores[key]
        matched = dist < self.accept
        # Graphs the model cannot tell apart (1-WL-equivalent ones, or covers of a smaller graph) match the
        # gradient equally; among matching graphs the tie-break (lower is better, 0 ideal) decides.
        tie = (self.tie_break(self.types, edges) if self.tie_break is not None else 0.0) if matched else float("inf")
        if (tie, dist) < (self.best_tie, self.result.distance):
            self.result.types, self.result.edges = list(self.types), edges
            self.result.distance, self.result.label, self.best_tie = dist, label, tie
        if (matched and tie == 0.0) or self.result.leaves >= self.max_leaves:
            raise _Stop

    def _expand(self) -> None:
        self.result.expansions += 1
        if time.monotonic() > self.deadline:
            self.result.timed_out = True
            raise _Stop
        v = next((u for u in range(len(self.types)) if self._open(u)), None)
        if v is None:
            self._leaf()
            return
        have = Counter(self.types[u] for u in self.adj[v])
        for _, blk in self.by_centre.get(self.types[v], ()):
            if any(blk[t] < k for t, k in have.items()):
                continue
            need = sorted((blk - have).elements())
            for targets in self._assignments(v, need, 0, []):
                self._attach(v, need, targets)

    def _assignments(self, v: int, need: list[int], i: int, chosen: list[int | None]):
        """For each needed neighbour type, an existing open node (ring closure) or None (a new node)."""
        if i == len(need):
            yield list(chosen)
            return
        t = need[i]
        prev = chosen[-1] if i > 0 and need[i - 1] == t else -1
        options: list[int | None] = []
        if prev is not None:  # among equal types: existing nodes in increasing order, then new ones
            options += [u for u in range(len(self.types))
                        if u != v and self.types[u] == t and u not in self.adj[v] and u not in chosen
                        and self._open(u) and (prev == -1 or u > prev)]
        options.append(None)  # ring closures first: small graphs before their unrollings
        for o in options:
            chosen.append(o)
            yield from self._assignments(v, need, i + 1, chosen)
            chosen.pop()

    def _attach(self, v: int, need: list[int], targets: list[int | None]) -> None:
        added, linked = 0, []
        for t, u in zip(need, targets):
            if u is None:
                self.types.append(t)
                self.adj.append(set())
                self.blk.append(None)
                u = len(self.types) - 1
                added += 1
            self.adj[v].add(u)
            self.adj[u].add(v)
            linked.append(u)
        ok = len(self.types) <= self.max_nodes and all(self._one_hop_ok(u) for u in (v, *linked))
        if ok:
            touched = {v, *linked}
            for u in (v, *linked):
                if self.blk[u] is not None:
                    touched |= self.adj[u]
            ok = all(self._two_hop_ok(u) for u in touched)
        if ok and self.shares is not None:
            ok = self._counts_ok()
        if ok:
            self._expand()
        for u in linked:
            self.adj[v].discard(u)
            self.adj[u].discard(v)
            self.blk[u] = None
        self.blk[v] = None
        for _ in range(added):
            self.types.pop()
            self.adj.pop()
            self.blk.pop()
