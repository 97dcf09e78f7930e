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
   coordinate descent with random restarts (our replacement for DAGER's random sampling of up to 10^7
   combinations on a GPU). Each position in turn takes the candidate whose own second-layer input lies
   closest to the span given the rest of the sentence, scored for all candidates at once by
   :class:`~gradleak_text.span.EncoderSteps` (one token's pass each, not a sentence's). This matters beyond
   a few sentences: once the batch holds more (token, position) pairs than distinct tokens plus positions,
   the span contains ``LN(E[v] + P[p])`` for most batch tokens ``v`` at most positions ``p`` (LayerNorm
   inputs are sums), so the token filter keeps ~all batch tokens everywhere (bert-minilm, 8 sentences: 120
   per position) and the encoder search has nothing to go on: such a batch (more than ``batch_size``
   candidates at most positions) is refused with ``AttackFailed("rank")``, like one beyond the width. The
   search stops once ``batch_size`` distinct sentences passed the check; a length whose one-position
   descent finds nothing falls back to coordinate descent on the whole sentence's mean distance.

Thresholds are relative distances (scale-free) computed in float64; DAGER's own are absolute (1e-5, 1e-3).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import torch

from gradleak import Attack, AttackerView, AttackFailed, Batch, Reconstruction, Update, param
from gradleak.config import require_positive

from .data import TextData, pack, special_ids
from .span import Architecture, Basis, DecoderSteps, EncoderSteps, input_span, span_distance

log = logging.getLogger(__name__)

#: DAGER's ``distinct_thresh``: sequences agreeing on 70% of positions count as one sentence.
_DISTINCT = 0.7


@dataclass(frozen=True)
class DagerConfig:
    rank_tol: float = param(1e-6, "singular values below rank_tol * largest count as zero")
    rank_margin: int = param(20, "refuse a batch whose token count comes within this margin of the width")
    l1_threshold: float = param(1e-5, "max relative distance of a token's layer-1 input to the span")
    l2_threshold: float = param(1e-3, "max mean relative distance of a sequence's layer-2 inputs to the span")
    max_combinations: int = param(512, "encoders: enumerate every sentence up to this many combinations")
    restarts: int = param(24, "encoders: coordinate-descent restarts per sentence length (at most)")
    sweeps: int = param(8, "encoders: coordinate-descent sweeps per restart")
    max_prefixes: int = param(256, "decoders: keep at most this many live prefixes per position")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "rank_tol", "l1_threshold", "l2_threshold", "max_combinations", "restarts",
                         "sweeps", "max_prefixes", allow_zero=())


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
            raise AttackFailed("rank", f"the batch holds at least {basis1.rank} distinct tokens, too many for the "
                                       f"width {arch.width} (limit {limit}); use smaller batches")
        basis2 = input_span(arch.gradient(update, 1), c.rank_tol)
        candidates = self._token_candidates(arch, basis1)
        if not candidates or not candidates[0]:
            # Every sentence starts with the same token: when even it is off the span, the gradient's
            # numerical rank overstates the span (the batch is too large for the width).
            raise AttackFailed("rank", f"no token lies in the span of rank {basis1.rank} of the first layer's "
                                       f"gradient (width {arch.width}); the batch has too many tokens, or a "
                                       "defense changed the gradient")
        crowded = sum(len(c) > view.batch_size for c in candidates[1:])
        if arch.kind == "bert" and 2 * crowded > len(candidates) - 1:
            # LayerNorm inputs are sums E[v] + P[p]: with more (token, position) pairs than distinct tokens plus
            # positions, the pairs are linearly dependent and the span holds most batch tokens at every
            # position. Decoders still separate them left to right; an encoder search has nothing to go on.
            raise AttackFailed("rank", f"the first layer's span admits more than {view.batch_size} tokens at "
                                       f"{crowded} of {len(candidates) - 1} positions: the batch's (token, "
                                       f"position) pairs are not linearly independent (rank {basis1.rank}); "
                                       "use smaller batches")
        sample: TextData = _template(view)
        if arch.kind == "gpt2":
            found = self._decode(arch, basis2, candidates, sample)
        else:
            found = self._encode(arch, basis2, candidates, sample, view.generator, view.batch_size)
        sequences = _choose(found, view.batch_size, c.l2_threshold)
        if not sequences:
            raise AttackFailed("search", "no sequence passed the second layer's span check")
        exact = sum(score < c.l2_threshold for _, score in found)
        data = pack([list(s) for s in sequences], sample.tokenizer, sample.style, sample.pad_id, view.device)
        labels = _labels(view, update)
        return Reconstruction(Batch(data, labels, "text"), objective=None, info={
            "rank": basis1.rank, "rank2": basis2.rank, "candidates_per_position": [len(s) for s in candidates],
            "exact_sequences": exact, "seconds": time.perf_counter() - start})

    # ------------------------------------------------------------------------------------------ token filter

    def _token_candidates(self, arch: Architecture, basis: Basis) -> list[list[int]]:
        """Per position, the tokens in the span; stops at the first position with none."""
        positions = int(arch.position.shape[0])
        out: list[list[int]] = []
        for first in range(0, positions, 32):
            dist = arch.token_distances(basis, min(first + 32, positions))[:, first:]
            for p in range(dist.shape[1]):
                ok = (dist[:, p] < self.config.l1_threshold).nonzero().flatten()
                if ok.numel() == 0:
                    return out
                out.append(ok[dist[ok, p].argsort()].tolist())
        return out

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
            tok = torch.tensor(tokens, device=device).repeat(n)
            pk = pv = None
            if keys is not None:
                pk, pv = keys.repeat_interleave(k, 0), values.repeat_interleave(k, 0)
            x, nk, nv = steps.step(pk, pv, tok, p)
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
            keys, values = nk[idx.to(device)], nv[idx.to(device)]
        done.extend((pre, float(s) / len(pre)) for pre, s in zip(prefixes, scores) if pre)
        return [(pre + (end,), score) for pre, score in done]

    # ------------------------------------------------------------------------------------------ encoders

    def _encode(self, arch: Architecture, basis2: Basis, candidates: list[list[int]], sample: TextData,
                generator: torch.Generator, batch_size: int) -> list[tuple[tuple[int, ...], float]]:
        """Per sentence end (a position holding ``[SEP]``), search the tokens in between; stops once
        ``batch_size`` distinct sentences passed the second layer's check."""
        start, end, pad = special_ids(sample.tokenizer, sample.style)
        steps = EncoderSteps(arch)
        found: dict[tuple[int, ...], float] = {}
        exact: dict[tuple[int, ...], float] = {}
        ends = [e for e in range(2, len(candidates)) if end in candidates[e]]
        # As many sentence lengths as sentences: each length holds one, so its first exact hit ends its search.
        one_each = len(ends) >= batch_size
        for e in ends:
            middle = [[t for t in candidates[p] if t not in (start, end, pad)] for p in range(1, e)]
            if any(not m for m in middle):
                continue
            total = 1
            for m in middle:
                total *= len(m)
            if total <= self.config.max_combinations:
                combos = torch.tensor(list(itertools.product(*middle)), dtype=torch.long)
                results = self._score_all(arch, basis2, combos, start, end)
            else:
                results = self._descend(arch, steps, basis2, middle, start, end, generator, exact)
                if not any(score < self.config.l2_threshold for _, score in results):
                    # The one-position steps can stall on long sentences: the mean distance decides instead.
                    results += self._full_descend(arch, basis2, middle, start, end, generator, one_each)
            for seq, score in results:
                found[seq] = min(score, found.get(seq, float("inf")))
                if score < self.config.l2_threshold:
                    exact[seq] = score
            if len(exact) >= batch_size:
                break
        return sorted(found.items(), key=lambda kv: kv[1])

    def _scores(self, arch: Architecture, basis2: Basis, middles: torch.Tensor, start: int, end: int) -> torch.Tensor:
        n = middles.shape[0]
        ids = torch.cat([torch.full((n, 1), start), middles, torch.full((n, 1), end)], 1).to(arch.word.device)
        out = []
        for chunk in ids.split(256):
            out.append(span_distance(basis2, arch.second_inputs(chunk)).mean(1).cpu())
        return torch.cat(out)

    def _score_all(self, arch, basis2, combos, start, end) -> list[tuple[tuple[int, ...], float]]:
        scores = self._scores(arch, basis2, combos, start, end)
        order = scores.argsort()[:64]
        return [((start, *combos[i].tolist(), end), float(scores[i])) for i in order]

    def _descend(self, arch: Architecture, steps: EncoderSteps, basis2: Basis, middle: list[list[int]], start: int,
                 end: int, generator: torch.Generator, found: dict) -> list[tuple[tuple[int, ...], float]]:
        """Coordinate descent from random starts in groups of 4 (``restarts`` at most). Later groups are kept
        away from this length's sentences already found (several sentences can share a length), and a group
        that adds no new exact sentence ends the search."""
        out: list[tuple[tuple[int, ...], float]] = []
        here: list[tuple[int, ...]] = []
        for first in range(0, self.config.restarts, 4):
            results = self._descend_group(arch, steps, basis2, middle, start, end, generator,
                                          min(4, self.config.restarts - first), here)
            out.extend(results)
            fresh = {s: score for s, score in results if score < self.config.l2_threshold and s not in found}
            if not fresh:
                break
            found.update(fresh)
            here.extend(fresh)
        return out

    def _descend_group(self, arch, steps, basis2, middle, start, end, generator, R, avoid):
        """Gauss-Seidel sweeps: each position in turn takes the candidate whose own second-layer input lies
        closest to the span, the rest of the sentence fixed (:meth:`EncoderSteps.at`); the true sentence is a
        fixed point (every position at distance ~0). Stops when a sweep changes nothing.

        ``avoid``: found sentences; a restart agreeing with one on ``distinct`` of the other positions may not
        take its token (DAGER's ``distinct_thresh`` notion of one sentence), so it cannot fall back into it."""
        device = arch.word.device
        options = [torch.tensor(m, dtype=torch.long, device=device) for m in middle]
        with torch.no_grad():
            inputs = [arch.ln(arch.word[o] + arch.position[p + 1]) for p, o in enumerate(options)]
        pick = [o[torch.randint(len(o), (R,), generator=generator, device=generator.device).to(device)]
                for o in options]
        cur = torch.stack([torch.full((R,), start, device=device), *pick, torch.full((R,), end, device=device)], 1)
        avoid_t = torch.tensor(avoid, dtype=torch.long, device=device).view(-1, cur.shape[1])
        inner = len(options)
        for _sweep in range(self.config.sweeps):
            changed = False
            for p in torch.randperm(inner, generator=generator, device=generator.device).tolist():
                if len(options[p]) == 1:
                    continue
                dist = span_distance(basis2, steps.at(steps.inputs(cur), p + 1, inputs[p]))
                for a in avoid_t:
                    same = (cur[:, 1:-1] == a[1:-1]).sum(1) - (cur[:, p + 1] == a[p + 1]).long()
                    close = (same >= _DISTINCT * (inner - 1)).to(dist.device)
                    dist[close.unsqueeze(1) & (options[p] == a[p + 1]).to(dist.device).unsqueeze(0)] = float("inf")
                new = options[p][dist.argmin(1).to(device)]
                changed = changed or bool((new != cur[:, p + 1]).any())
                cur[:, p + 1] = new
            if not changed:
                break
        best = self._scores(arch, basis2, cur[:, 1:-1].cpu(), start, end)
        return [(tuple(cur[r].tolist()), float(best[r])) for r in range(R)]

    def _full_descend(self, arch, basis2, middle: list[list[int]], start: int, end: int,
                      generator: torch.Generator, stop_at_first: bool) -> list[tuple[tuple[int, ...], float]]:
        """Coordinate descent on the mean second-layer distance of whole sentences, groups of 4 restarts."""
        out: list[tuple[tuple[int, ...], float]] = []
        for first in range(0, self.config.restarts, 4):
            results = self._full_group(arch, basis2, middle, start, end, generator,
                                       min(4, self.config.restarts - first))
            out.extend(results)
            if stop_at_first and any(score < self.config.l2_threshold for _, score in results):
                break
        return out

    def _full_group(self, arch, basis2, middle, start, end, generator, R):
        options = [torch.tensor(m, dtype=torch.long) for m in middle]
        cur = torch.stack([o[torch.randint(len(o), (R,), generator=generator, device=generator.device).cpu()]
                           for o in options], 1)
        best = self._scores(arch, basis2, cur, start, end)
        for _sweep in range(10):
            changed = False
            for p in torch.randperm(len(options), generator=generator, device=generator.device).tolist():
                o = options[p]
                if len(o) == 1:
                    continue
                trial = cur.repeat_interleave(len(o), 0)
                trial[:, p] = o.repeat(R)
                s = self._scores(arch, basis2, trial, start, end).view(R, len(o))
                val, arg = s.min(1)
                better = val < best - 1e-12
                if bool(better.any()):
                    changed = True
                    cur[better, p] = o[arg[better]]
                    best = torch.where(better, val, best)
            if not changed or bool((best < self.config.l2_threshold).any()):
                break
        return [((start, *cur[r].tolist(), end), float(best[r])) for r in range(R)]


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
