"""DAGER: exact batch text reconstruction from the low rank of attention-layer gradients.

Petrov, Dimitrov, Baader, Mueller, Vechev, "DAGER: Exact Gradient Inversion for Large Language Models",
NeurIPS 2024 (insait-institute/dager-gradient-inversion).

1. Rank: the stacked Q/K/V weight gradient of the first attention layer has rank equal to the number of
   distinct (token, position) inputs of the batch while that number stays below the width. A rank within
   ``rank_margin`` of the width means the span is (nearly) everything: the batch is refused with
   ``AttackFailed("rank")`` instead of returning guesses.
2. Token filter: at every position ``p`` keep the vocabulary tokens ``v`` whose layer input
   ``LN(E[v] + P[p])`` lies in that span (relative distance below ``l1_threshold``).
3. Sequence search against the second layer's span (mean relative distance below ``l2_threshold``):
   decoders (GPT-2) extend prefixes left to right, since causal attention fixes a prefix's states;
   encoders (BERT) search each sentence length (a ``[SEP]`` candidate ends a sentence) over the per-position
   candidates: exhaustively when the product is at most ``max_combinations`` (DAGER's enumeration), else by
   a chain beam search (our replacement for DAGER's random sampling of up to 10^7 combinations on a GPU).
   It rests on a measured property of layer 1 of the pretrained MiniLM: the second-layer input at position
   ``p`` hangs mostly on the tokens at ``p - 1`` and ``p`` (changing the token at ``p`` moves position ``p``
   by ~0.17 and ``p + 1`` by ~0.15 in relative span distance, every other position by ~0.015), so a beam of
   partial sentences scored by their positions' span distances follows a sentence like a decoder would.
   Passes alternate right to left and left to right (see :mod:`gradleak_text.dager_encoder`); a start whose best
   sentence misses the check is polished by single-token moves and, once those
   stall, by moves of two neighbouring tokens together (a wrong pair that fits each other, which no single
   move can undo: on bert-minilm batch 4 the one sentence the single moves missed had two adjacent tokens
   wrong). Moves are ranked by the span distances of the positions they act on (``p, p + 1``; a pair
   ``p .. p + 2``), one first-layer row per candidate, and only the ``shortlist`` best are scored on the
   whole sentence's mean distance, which alone decides (scoring every move in full made the first
   batch of 4 take ~3x as long).

   Where the paper and its code leave a choice open, ours:

   - Several sentences per length: after an exact hit the next start removes that sentence's token from
     every position that has other candidates (DAGER's ``--l2_filter non-overlap``). We do the same after a
     near miss, which is nearly always another sentence's chain (true token pairs in the wrong frame); the
     polish runs over the full candidate lists, so a token dropped that way can come back. A length is
     given up after ``misses`` starts without a new sentence, or after the first such start once it has
     given a sentence (two sentences of one length are rarer than one; the extra starts cost the first
     batch of 4 a fifth of its time). We do not reject false lengths by score: their best starts (mean
     distance 2e-2 to 1e-1 on bert-minilm batch 4) overlap the true lengths' failed starts.
   - DAGER's ``--l1_filter maxB`` (keep the ``batch_size`` closest tokens per position) is not used: on
     MiniLM the true tokens rank up to 13th among the candidates at a position, so it would lose them.
   - The official code (``utils/filtering_encoder.py``) scores all lengths whose ``[SEP]`` passes, with
     token types 0 and 1, and takes Q's gradient alone with the rank as the maximum over the first ten
     layers; we take Q, K and V stacked, token type 0 (our cases have single sentences) and each layer's own
     numerical rank.

4. Peeling (our extension, :mod:`gradleak_text.peel`): a FedSGD update is the mean of per-sample gradients
   and BERT has no batch statistics, so each sentence found is subtracted from the update as its own
   gradient (under the label that lowers the second layer's rank, verified so); the spans, the token lists
   and the sentence ends are then read again from the rest of the batch. Updates of several local steps
   cannot be split that way and are searched without it, as before.

   Once a batch holds more (token, position) pairs than distinct tokens plus positions, the span contains
   ``LN(E[v] + P[p])`` for most batch tokens ``v`` at most positions ``p`` (LayerNorm inputs are sums: the
   span of the pairs' inputs has at most distinct tokens + positions + 1 dimensions), so the token filter
   keeps ~all batch tokens everywhere (bert-minilm, 8 sentences: 120 per position at 33 of 38 positions,
   ``[SEP]`` among them). This is model-independent; the official code meets it too on BERT-base and has no
   remedy beyond ``maxB``. The second layer still separates sentences (its span has one dimension per
   token of the batch, below the width). Such a batch (more than the remaining batch size of candidates at
   most positions) has its lists narrowed by the embedding gradients
   (:func:`~gradleak_text.placement.placement_filter`: ~30 tokens per position instead of ~120 on that batch; a
   repeated token gets only about ``1 / count`` at its true positions, so the cut is at 0, which loses 2 to 6
   of ~190 true pairs per batch, and -0.1 in the relaxed passes) and its ends tried in the order of ``[SEP]``'s
   placement coefficient; every sentence found and peeled brings the rest closer to independence, and after
   three or four sentences the token filter is exact again. The last position with any token always comes
   first: padding has no gradient, so it is the end of the longest sentence still in the residual. Each
   residual is searched in widening passes: the ``remaining + 1`` likeliest ends, each once briefly (one start,
   polished only when it misses by about one token) while the lists are crowded, first on the narrowed then
   on the relaxed lists, then in full on each, then every end briefly and in full; the first sentence found
   ends the pass. Polishes always run over the token filter's lists, so a true token the narrowed lists lost
   can come back (batch 17 of the benchmark: its longest sentence came one token short on the first brief
   start, and the batch took 55 s of wall time on 2 threads before, 12 s with that polish). The residual keeps
   the float32 rounding of the whole batch's gradient while its signal shrinks, so the token threshold grows by
   the ratio of the two gradients' norms (true tokens reach ~1e-5 relative distance after 7 of 8 sentences), with a
   margin of 3 for the residual's weak directions. Without embedding gradients in the update such a batch is
   refused with ``AttackFailed("rank")``, as is a batch whose second-layer gradient reaches
   ``width - rank_margin`` (then no sentence can be checked).

Thresholds are relative distances (scale-free) computed in float64; DAGER's own are absolute (1e-5, 1e-3).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from gradleak import Attack, AttackerView, AttackFailed, Batch, Reconstruction, Update, param
from gradleak.config import require_positive

from .data import TextData, pack, special_ids
from .dager_encoder import EncoderSearch
from .peel import Peeler
from .placement import placement_filter
from .span import Architecture, Basis, DecoderSteps, input_span, span_distance

log = logging.getLogger(__name__)

#: DAGER's ``distinct_thresh``: sequences agreeing on 70% of positions count as one sentence.
_DISTINCT = 0.7

#: Extra factor on the token threshold of a residual (see ``_encode``).
_RESIDUAL_MARGIN = 3.0

#: The encoder's widening passes over one residual: (every end, relaxed lists, brief).
_PASSES = ((False, False, True), (False, True, True), (False, False, False), (False, True, False),
           (True, True, True), (True, True, False))


@dataclass(frozen=True)
class DagerConfig:
    rank_tol: float = param(1e-6, "singular values below rank_tol * largest count as zero")
    rank_margin: int = param(20, "refuse a batch whose token count comes within this margin of the width")
    l1_threshold: float = param(1e-5, "max relative distance of a token's layer-1 input to the span")
    l2_threshold: float = param(1e-3, "max mean relative distance of a sequence's layer-2 inputs to the span")
    max_combinations: int = param(512, "encoders: enumerate every sentence up to this many combinations")
    restarts: int = param(8, "encoders: random starts per sentence length (at most; one per sentence found)")
    sweeps: int = param(6, "encoders: beam passes per start (at most)")
    beam: int = param(8, "encoders: prefixes kept per position in a beam pass")
    misses: int = param(3, "encoders: random starts without a new sentence before a length is given up")
    max_prefixes: int = param(256, "decoders: keep at most this many live prefixes per position")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "rank_tol", "l1_threshold", "l2_threshold", "max_combinations", "restarts",
                         "sweeps", "beam", "misses", "max_prefixes", allow_zero=())


class Dager(Attack):
    """DAGER (Petrov et al., NeurIPS 2024): exact text from the span of attention-layer gradients."""

    name = "dager"
    modalities = frozenset({"text"})
    paper = "Petrov et al., DAGER: Exact Gradient Inversion for Large Language Models, NeurIPS 2024"
    Config = DagerConfig

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        start = time.perf_counter()
        c = self.config
        arch = Architecture(view.model)
        basis1 = input_span(arch.gradient(update, 0), c.rank_tol)
        limit = arch.width - c.rank_margin
        if basis1.rank == 0:
            raise AttackFailed("rank", "the first attention layer's gradient is zero")
        if basis1.rank >= limit:
            raise AttackFailed("rank", f"the first layer's gradient has rank {basis1.rank}, at or above the limit "
                                       f"{limit} of width {arch.width}: the batch holds too many distinct tokens, "
                                       "or a defense added noise to the gradient; use smaller batches")
        basis2 = input_span(arch.gradient(update, 1), c.rank_tol)
        if basis2.rank >= limit:
            raise AttackFailed("rank", f"the second layer's gradient has rank {basis2.rank}, at or above the limit "
                                       f"{limit} of width {arch.width}: the batch holds too many tokens to check "
                                       "sentences against it; use smaller batches")
        candidates = arch.token_candidates(basis1, c.l1_threshold)
        if not candidates or not candidates[0]:
            # Every sentence starts with the same token: when even it is off the span, the gradient's
            # numerical rank overstates the span (the batch is too large for the width).
            raise AttackFailed("rank", f"no token lies in the span of rank {basis1.rank} of the first layer's "
                                       f"gradient (width {arch.width}); the batch has too many tokens, or a "
                                       "defense changed the gradient")
        sample: TextData = _template(view)
        if arch.kind == "gpt2":
            found = self._decode(arch, basis2, candidates, sample)
            exact = sum(score < c.l2_threshold for _, score in found)
        else:
            found, exact = self._encode(arch, view, update, candidates, sample)
        sequences = _choose(found, view.batch_size, c.l2_threshold)
        if not sequences:
            raise AttackFailed("search", "no sequence passed the second layer's span check")
        data = pack([list(s) for s in sequences], sample.tokenizer, sample.style, sample.pad_id, view.device)
        labels = _labels(view, update)
        return Reconstruction(Batch(data, labels, "text"), objective=None, info={
            "rank": basis1.rank, "rank2": basis2.rank, "candidates_per_position": [len(s) for s in candidates],
            "exact_sequences": exact, "seconds": time.perf_counter() - start})

    # ------------------------------------------------------------------------------------------ encoders

    def _encode(self, arch: Architecture, view: AttackerView, update: Update, candidates: list[list[int]],
                sample: TextData) -> tuple[list[tuple[tuple[int, ...], float]], int]:
        """Sentence ends in turn; each sentence found is peeled off the update (:mod:`gradleak_text.peel`) and
        the spans, token lists and ends are read again from the rest. Returns every sentence scored and the
        number of exact ones."""
        c = self.config
        start, end, pad = special_ids(sample.tokenizer, sample.style)
        peeler = Peeler(arch, view, update, arch.span_tensors(), sample.tokenizer, sample.style, sample.pad_id,
                        c.rank_tol)
        found: dict[tuple[int, ...], float] = {}
        exact: list[tuple[int, ...]] = []
        tried: set[tuple] = set()
        residual, level = update, 0
        while len(exact) < view.batch_size:
            remaining = view.batch_size - peeler.peeled
            # Widening passes over one residual (``_PASSES``): the likeliest ``remaining + 1`` ends, briefly on the
            # narrowed then on relaxed lists (a brief pass is cheap, and a sentence often misses one token from
            # the narrowed lists until others are peeled), then in full, then every end. The last position with
            # any token is a sentence end for sure and comes first.
            every, relaxed, brief = _PASSES[level]
            lists, ends, crowded = self._narrow(arch, residual, candidates, remaining, (start, end, pad), not exact,
                                                relaxed=relaxed)
            search = EncoderSearch(arch, input_span(arch.gradient(residual, 1), c.rank_tol), c, start, end, pad)
            pool = ends if every else ends[:remaining + 1]
            quick = crowded and peeler.available and brief
            peeled = False
            for e in pool:
                middle = _inner(lists, e, (start, end, pad))
                brief = quick
                key = (e, tuple(tuple(m) for m in middle), brief)
                if any(not m for m in middle) or key in tried:
                    continue
                tried.add(key)
                log.debug("dager: end %d, %d found, %d to go, %.1f tokens per position", e, len(exact),
                          remaining, sum(map(len, middle)) / max(len(middle), 1))
                for seq, score in search.length(middle, view.generator, first=peeler.available, quick=brief,
                                                wide=_inner(candidates, e, (start, end, pad))):
                    found[seq] = min(score, found.get(seq, float("inf")))
                    if score < c.l2_threshold and seq not in exact:
                        exact.append(seq)
                        if len(exact) < view.batch_size:
                            peeled = peeler.peel(seq, most=remaining) or peeled
                if peeled or len(exact) >= view.batch_size:
                    break
            if len(exact) >= view.batch_size:
                break
            if not peeled:
                log.debug("dager: level %d over ends %s found nothing; last position %d", level, pool, len(lists) - 1)
                level += 1
                if level >= len(_PASSES):
                    break
                continue
            residual, level = peeler.update, 0
            rest = arch.gradient(residual, 0)
            basis1 = input_span(rest, c.rank_tol)
            # The float32 rounding of the client's gradient stays in the residual while its signal shrinks, so
            # relative distances of true tokens grow by about the same factor (up to ~1e-5 after 7 of 8
            # sentences), more along the residual's weak directions: a true token reached 2.3e-5 against 1.7e-5
            # where the lists stop being crowded (5 of 8 peeled, 6 false tokens below 3e-5 there), hence the
            # margin of 3. The rest's span lies inside the batch's, so only tokens that passed before can pass now.
            inflation = max(1.0, float(arch.gradient(update, 0).norm() / rest.norm().clamp_min(1e-30)))
            candidates = arch.token_candidates(basis1, c.l1_threshold * inflation * _RESIDUAL_MARGIN,
                                               sorted({t for l in candidates for t in l}))
            if not candidates:
                break
        return sorted(found.items(), key=lambda kv: kv[1]), len(exact)

    def _narrow(self, arch: Architecture, update: Update, candidates: list[list[int]], remaining: int,
                special: tuple[int, int, int], first: bool,
                relaxed: bool = False) -> tuple[list[list[int]], list[int], bool]:
        """Token lists and sentence ends (positions whose list holds ``[SEP]``) to search, in order, and whether
        the lists were crowded.

        When the first layer's span admits more than ``remaining`` tokens at most positions (its (token,
        position) pairs are linearly dependent, see the module docstring), the lists are narrowed by the
        embedding gradients (:func:`~gradleak_text.placement.placement_filter`) and the ends taken in the
        order of ``[SEP]``'s coefficients there; without those gradients the batch is refused (``first``) or
        the search ends. A token is kept where its coefficient is above 0, or above -0.1 when ``relaxed`` (see
        the module docstring). The last position with any token comes first: padding has no gradient, so it
        ends the longest sentence (and only a sentence's end sits there)."""
        start, end, _ = special
        ends = [e for e in range(2, len(candidates)) if end in candidates[e]]
        last = sorted(ends, key=lambda e: e != len(candidates) - 1)
        crowded = sum(len(l) > remaining for l in candidates[1:])
        if 2 * crowded <= len(candidates) - 1:
            return candidates, last, False
        word, position = arch.name(arch.word), arch.name(arch.position_weight)
        if word not in update.tensors or position not in update.tensors:
            if not first:
                return candidates, [], True
            raise AttackFailed("rank", f"the first layer's span admits more than {remaining} tokens at {crowded} "
                                       f"of {len(candidates) - 1} positions (its (token, position) pairs are not "
                                       "linearly independent) and the update has no embedding gradients to "
                                       "place them; use smaller batches")
        lists, coefficients = placement_filter(update.tensors[word], update.tensors[position], candidates,
                                               (start, end), keep=0.0 if not relaxed else -0.1)
        weight = coefficients.get(end)
        if weight is not None:
            ends.sort(key=lambda e: -float(weight[e]))
        return lists, sorted(ends, key=lambda e: e != len(candidates) - 1), True

    # ------------------------------------------------------------------------------------------ decoders

    def _decode(self, arch: Architecture, basis2: Basis, candidates: list[list[int]],
                sample: TextData) -> list[tuple[tuple[int, ...], float]]:
        """Left-to-right extension; a prefix no candidate extends is a finished sentence (its EOS is invisible)."""
        steps = DecoderSteps(arch)
        device = arch.word.device
        thr = self.config.l2_threshold
        _, end, _ = special_ids(sample.tokenizer, sample.style)
        prefixes: list[tuple[int, ...]] = [()]
        scores = torch.zeros(1, dtype=torch.float64)
        keys = values = None
        done: list[tuple[tuple[int, ...], float]] = []
        for p, tokens in enumerate(candidates):
            n, k = len(prefixes), len(tokens)
            x, tk, tv = steps.step(keys, values, torch.tensor(tokens, device=device), p)
            dist = span_distance(basis2, x).cpu()
            ok = dist < thr
            parent = torch.arange(n).repeat_interleave(k)
            extended = set(parent[ok].tolist())
            for i in range(n):
                if i not in extended and prefixes[i]:
                    done.append((prefixes[i], float(scores[i]) / len(prefixes[i])))
            idx = ok.nonzero().flatten()
            if idx.numel() == 0:
                prefixes = []
                break
            if idx.numel() > self.config.max_prefixes:
                idx = idx[dist[idx].argsort()[: self.config.max_prefixes]]
            prefixes = [prefixes[int(parent[i])] + (tokens[int(i) % k],) for i in idx]
            scores = scores[parent[idx]] + dist[idx]
            parents, picks = parent[idx].to(device), (idx % k).to(device)
            keys = tk[picks] if keys is None else torch.cat([keys[parents], tk[picks]], dim=2)
            values = tv[picks] if values is None else torch.cat([values[parents], tv[picks]], dim=2)
        done.extend((pre, float(s) / len(pre)) for pre, s in zip(prefixes, scores) if pre)
        return [(pre + (end,), score) for pre, score in done]


def _inner(lists: list[list[int]], end: int, special: tuple[int, ...]) -> list[list[int]]:
    """The token lists of positions ``1 .. end - 1`` (a sentence whose ``[SEP]`` is at ``end``), special tokens
    left out."""
    return [[t for t in lists[p] if t not in special] for p in range(1, end)]


def _template(view: AttackerView) -> TextData:
    """The tokenizer and style of the case (public: the server knows its model's tokenizer)."""
    model = view.model
    if hasattr(model, "bert"):
        return TextData(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long), "bert", "bert",
                        int(model.config.pad_token_id or 0))
    return TextData(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long), "gpt2", "gpt2",
                    int(model.config.eos_token_id))


def _choose(found: list[tuple[tuple[int, ...], float]], n: int, threshold: float) -> list[tuple[int, ...]]:
    """``n`` sequences: exact ones first (best score), then the best near misses; repeats fill the rest.

    Identical sentences of a batch give one span element, so a batch with repeats yields fewer exact ones.
    """
    ranked = sorted(found, key=lambda kv: kv[1])
    exact = [s for s, score in ranked if score < threshold]
    chosen = exact[:n]
    for s, score in ranked:
        if len(chosen) >= n:
            break
        if score >= threshold and not any(_similar(s, c) for c in chosen):
            chosen.append(s)
    i = 0
    while chosen and len(chosen) < n:
        chosen.append(chosen[i % len(chosen)])
        i += 1
    return chosen


def _similar(a: tuple[int, ...], b: tuple[int, ...], fraction: float = _DISTINCT) -> bool:
    """DAGER's ``distinct_thresh``: two sequences agreeing on 70% of positions are one sentence."""
    same = sum(x == y for x, y in zip(a, b))
    return same >= fraction * max(len(a), len(b))


def _labels(view: AttackerView, update: Update) -> torch.Tensor | None:
    if view.num_classes is None:
        return None
    if view.labels is not None:
        return view.labels
    from gradleak.engine import count_labels

    return count_labels(view, update)


ATTACKS = (Dager,)
