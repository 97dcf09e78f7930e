"""DAGER's sentence search for encoders (BERT): the second layer's span check over whole sentences.

Bidirectional attention gives every position's second-layer input the whole sentence as context, so an
encoder cannot be read left to right like a decoder. Per sentence length (a position whose candidates hold
``[SEP]``) the tokens in between are searched: exhaustively when the product of the per-position candidates
is at most ``max_combinations`` (DAGER's enumeration), else by the chain beam search of :meth:`_chain_start`
with the local polish of :meth:`_polish` (our replacement for DAGER's random sampling of up to 10^7
combinations on a GPU). :mod:`gradleak_text.dager` describes the choices and the search's limit.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch

from .span import Architecture, Basis, EncoderSteps, span_distance

if TYPE_CHECKING:
    from .dager import DagerConfig


#: A brief start is polished when its two worst positions hold at least this share of its summed distance: one
#: wrong token moves its own position and the next far more than the rest. Measured on the brief starts of
#: batches 5 and 17 of the benchmark's batches of 8 (all polished): the four the polish completed had shares of
#: 0.36-0.55, the eleven it could not 0.07-0.34 (a polish costs 0.2-1.4 s there).
_NEAR_SHARE = 0.3


class EncoderSearch:
    """Sentences of one batch whose second-layer inputs lie in the span ``basis2``.

    ``config`` is the attack's :class:`~gradleak_text.dager.DagerConfig` (``l2_threshold``,
    ``max_combinations``, ``restarts``, ``sweeps``, ``beam``, ``misses``); ``start``, ``end`` and ``pad`` the
    tokenizer's ``[CLS]``, ``[SEP]`` and ``[PAD]`` ids.
    """

    def __init__(self, arch: Architecture, basis2: Basis, config: DagerConfig, start: int, end: int, pad: int) -> None:
        self.arch, self.basis2, self.config = arch, basis2, config
        self.start, self.end, self.pad = start, end, pad
        self.steps = EncoderSteps(arch)

    def length(self, middle: list[list[int]], generator: torch.Generator,
               first: bool = False, quick: bool = False,
               wide: list[list[int]] | None = None) -> list[tuple[tuple[int, ...], float]]:
        """Sentences ``[CLS] middle [SEP]`` with one candidate list per middle position; ``first`` stops at the
        first sentence that passes the check, ``quick`` makes one start and polishes only a near miss (the
        caller comes back to this length); ``wide``: lists holding ``middle``'s (by default ``middle``) for the
        polish, which can then put back a token the search's lists lack. Returns (sentence, mean second-layer
        distance) pairs."""
        total = 1
        for m in middle:
            total *= len(m)
        if total <= self.config.max_combinations:
            return self._score_all(torch.tensor(list(itertools.product(*middle)), dtype=torch.long))
        return self._chain(middle, generator, first, quick, wide or middle)

    def scores(self, middles: torch.Tensor) -> torch.Tensor:
        """Mean second-layer span distance of each sentence ``[CLS] middle [SEP]`` (one row of ``middles`` each)."""
        arch, basis2, start, end = self.arch, self.basis2, self.start, self.end
        n = middles.shape[0]
        ids = torch.cat([torch.full((n, 1), start), middles, torch.full((n, 1), end)], 1).to(arch.word.device)
        out = []
        for chunk in ids.split(256):
            out.append(span_distance(basis2, arch.second_inputs(chunk)).mean(1).cpu())
        return torch.cat(out)

    def _score_all(self, combos: torch.Tensor) -> list[tuple[tuple[int, ...], float]]:
        start, end = self.start, self.end
        scores = self.scores(combos)
        order = scores.argsort()[:64]
        return [((start, *combos[i].tolist(), end), float(scores[i])) for i in order]

    def _chain(self, middle: list[list[int]], generator: torch.Generator, first: bool,
               quick: bool, wide: list[list[int]]) -> list[tuple[tuple[int, ...], float]]:
        """One sentence length: beam passes from random starts (``restarts`` at most), each start refined by
        ``sweeps`` passes. After an exact hit the next start drops that sentence's token from every position
        with other candidates (DAGER's ``non-overlap`` heuristic), since several sentences can share a length;
        a start that finds nothing new after a hit, or ``misses`` such starts, end the search of this length.
        ``first``: return at the first hit (the caller peels it off the update and searches again); ``quick``:
        one start, polished only when it is a near miss (:meth:`_near`); the polish runs over ``wide``."""
        out: list[tuple[tuple[int, ...], float]] = []
        options = [list(m) for m in middle]
        misses = 0
        for _restart in range(self.config.restarts):
            results = self._chain_start(options, generator)
            best = min(results, key=lambda r: r[1])
            if best[1] >= self.config.l2_threshold and (not quick or self._near(best[0])):
                results.append(self._polish(wide, best))
            if quick:
                return results
            out.extend(results)
            hit = [s for s, score in results if score < self.config.l2_threshold]
            if hit and first:
                break
            if not hit:
                misses += 1
                # A second sentence of one length is rarer than the first: once the length gave one, the
                # first start that finds nothing new ends it.
                if misses >= self.config.misses or any(score < self.config.l2_threshold for _, score in out):
                    break
                # A near miss is mostly another sentence's chain (a consistent run of true token pairs in the
                # wrong frame): the next start leaves it out like a found sentence.
                hit = [min(results, key=lambda r: r[1])[0]]
            for p, o in enumerate(options):
                if len(o) > 1 and hit[0][p + 1] in o:
                    o.remove(hit[0][p + 1])
        return out

    def _near(self, sentence: tuple[int, ...]) -> bool:
        """Whether ``sentence`` misses the check by about one token: its two worst positions hold at least
        ``_NEAR_SHARE`` of its summed second-layer distance."""
        ids = torch.tensor([sentence], dtype=torch.long, device=self.arch.word.device)
        dist = span_distance(self.basis2, self.arch.second_inputs(ids))[0].sort(descending=True).values
        return float(dist[:2].sum()) >= _NEAR_SHARE * float(dist.sum())

    def _chain_start(self, middle: list[list[int]],
                     generator: torch.Generator) -> list[tuple[tuple[int, ...], float]]:
        """Beam passes over one sentence length, alternately right to left and left to right.

        The second-layer input at position ``p`` hangs mostly on the tokens at ``p - 1`` and ``p`` (layer 1 of
        a pretrained BERT has previous-token heads; any other token moves it ~10x less), so the sentence is
        followed as a chain: a beam of ``beam`` partial sentences, scored by the summed span distances of the
        positions their chosen tokens fix. Left to right, choosing ``p`` scores position ``p`` (its previous
        token is chosen); right to left, it scores ``p + 1`` (both its tokens are chosen), which undoes a wrong
        pair that fitted the previous pass's right-hand tokens. Unchosen positions keep the previous pass's
        tokens (a random draw at first). Stops when the best full sentence passes the check or two passes in a
        row did not improve it.

        The first pass runs right to left: it starts from the ``[SEP]`` that ends this length, which only the
        batch's sentences of this length have there, while every sentence shares ``[CLS]``, so a first pass
        from the left follows whichever sentence's chain fits best and often leaves this length's sentence
        behind for good. Measured on the 25 batches of 8 built-in sentences on bert-minilm (one thread): the
        slowest batch went from 121 to 48 CPU s, the median from 12.1 to 15.1 s, the total from 9.5 to 7.5
        minutes."""
        arch, steps, basis2, start, end = self.arch, self.steps, self.basis2, self.start, self.end
        device = arch.word.device
        W = self.config.beam
        options = [torch.tensor(m, dtype=torch.long, device=device) for m in middle]
        with torch.no_grad():
            inputs = [arch.ln(arch.word[o] + arch.position[p + 1]) for p, o in enumerate(options)]
        # Keys and values hang on one (token, position) pair each: computed once per candidate, then gathered
        # into the beams' rows (a quarter of the search's time went to recomputing them per step).
        table = [steps.kv(i) for i in inputs]
        pick = [o[int(torch.randint(len(o), (1,), generator=generator, device=generator.device))] for o in options]
        background = torch.stack([torch.tensor(start, device=device), *pick, torch.tensor(end, device=device)])
        best_score, stale, results = float("inf"), 0, []
        for sweep in range(self.config.sweeps):
            forward = sweep % 2 == 1
            beams = background.unsqueeze(0).clone()
            x = steps.inputs(beams)
            keys, values = steps.kv(x)
            total = torch.zeros(1, dtype=torch.float64)
            order = range(len(options)) if forward else range(len(options) - 1, -1, -1)
            for p in order:
                o = options[p]
                if len(o) == 1:
                    pick, parent = torch.zeros(len(beams), dtype=torch.long, device=device), None
                else:
                    row = p + 1 if forward else p + 2
                    y = steps.at_row(x, p + 1, inputs[p], row, (keys, values))
                    flat = (total.unsqueeze(1) + span_distance(basis2, y).cpu()).flatten()
                    keep = flat.argsort()[:W]
                    pick, parent = (keep % len(o)).to(device), (keep // len(o)).to(device)
                    beams, x, keys, values = beams[parent], x[parent], keys[parent], values[parent]
                    total = flat[keep]
                beams[:, p + 1], x[:, p + 1] = o[pick], inputs[p][pick]
                keys[:, p + 1], values[:, p + 1] = table[p][0][pick], table[p][1][pick]
            scores = self.scores(beams[:, 1:-1].cpu())
            results.extend((tuple(b.tolist()), float(sc)) for b, sc in zip(beams, scores))
            i = int(scores.argmin())
            if float(scores[i]) < self.config.l2_threshold:
                break
            if float(scores[i]) < best_score * (1 - 1e-6):
                best_score, background, stale = float(scores[i]), beams[i], 0
            else:
                stale += 1
                if stale >= 2:
                    break
        return results

    def _polish(self, middle: list[list[int]], best: tuple[tuple[int, ...], float], sweeps: int = 3,
                shortlist: int = 4, pair_width: int = 8) -> tuple[tuple[int, ...], float]:
        """Local moves over the full candidate lists (a start may have dropped a token it needs): the chain's
        near misses are mostly a token or two off, sometimes two neighbours together (a wrong pair that fits
        each other). A move of the token at ``p`` is ranked by the second layer's span distance at ``p`` and
        ``p + 1`` (where it acts; every other position moves ~10x less), a move of the pair at ``p, p + 1`` by
        the distances at ``p .. p + 2``; the ``shortlist`` best moves are then scored on the whole sentence's
        mean distance and the best is kept if it improves it. Only moves that lower the local distances are scored
        in full; pair moves run once single moves stall; ``sweeps`` bounds the passes."""
        arch, steps, basis2 = self.arch, self.steps, self.basis2
        device = arch.word.device
        seq, score = best
        cur = torch.tensor(seq, dtype=torch.long, device=device)
        opts = [torch.tensor(m, dtype=torch.long, device=device) for m in middle]
        with torch.no_grad():
            inputs = [arch.ln(arch.word[o] + arch.position[p + 1]) for p, o in enumerate(opts)]

        def improves(trials: torch.Tensor) -> bool:
            """Move to the best of ``trials`` by the whole sentence's score if it beats the current one."""
            nonlocal cur, score
            s = self.scores(trials[:, 1:-1].cpu())
            i = int(s.argmin())
            if float(s[i]) < score - 1e-12:
                score, cur = float(s[i]), trials[i].clone()
                return True
            return False

        def single() -> bool:
            changed = False
            for p, o in enumerate(opts):
                if len(o) == 1:
                    continue
                x = steps.inputs(cur.unsqueeze(0))
                local = (span_distance(basis2, steps.at(x, p + 1, inputs[p])) +
                         span_distance(basis2, steps.at_row(x, p + 1, inputs[p], p + 2)))[0].cpu()
                now = float(local[int((o == cur[p + 1]).nonzero()[0])])
                order = [int(i) for i in local.argsort() if float(local[i]) < now - 1e-12][:shortlist]
                if not order:
                    continue
                trials = cur.repeat(len(order), 1)
                trials[:, p + 1] = o[torch.tensor(order, device=device)]
                if improves(trials):
                    changed = True
                    if score < self.config.l2_threshold:
                        return True
            return changed

        def pairs() -> bool:
            changed = False
            for p in range(len(opts) - 1):
                a, b = opts[p], opts[p + 1]
                if len(a) == 1 or len(b) == 1:
                    continue  # a single move covers it
                i, j = p + 1, p + 2
                x = steps.inputs(cur.unsqueeze(0))
                # Row i hangs on the token at i (b moves it ~10x less), row j + 1 on the token at j: each
                # shortlists its token alone; row j, which needs both, is scored on the shortlists' grid.
                d_i = span_distance(basis2, steps.at(x, i, inputs[p]))[0]
                d_k = span_distance(basis2, steps.at_row(x, j, inputs[p + 1], j + 1))[0]
                ai, bi = _shortlist(d_i, a, cur[i], pair_width), _shortlist(d_k, b, cur[j], pair_width)
                grid = cur.repeat(len(ai), 1)
                grid[:, i] = a[ai]
                d_j = span_distance(basis2, steps.at(steps.inputs(grid), j, inputs[p + 1][bi]))
                local = (d_i[ai].unsqueeze(1) + d_j + d_k[bi].unsqueeze(0)).cpu()
                now = float(local[0, 0])  # the shortlists start with the current tokens
                flat = local.flatten()
                order = flat.argsort()[:shortlist]
                order = order[flat[order] < now - 1e-12]
                if order.numel() == 0:
                    continue
                trials = cur.repeat(len(order), 1)
                trials[:, i] = a[ai[(order // len(bi)).to(device)]]
                trials[:, j] = b[bi[(order % len(bi)).to(device)]]
                if improves(trials):
                    changed = True
                    if score < self.config.l2_threshold:
                        return True
            return changed

        thr = self.config.l2_threshold
        for _round in range(sweeps):
            if single():
                continue
            if score < thr or not pairs():
                break
        return tuple(cur.tolist()), score


def _shortlist(dist: torch.Tensor, options: torch.Tensor, current: torch.Tensor, width: int) -> torch.Tensor:
    """Indices into ``options``: the current token's first, then the ``width`` closest others."""
    now = int((options == current).nonzero()[0])
    rest = [int(i) for i in dist.argsort() if int(i) != now][:width]
    return torch.tensor([now, *rest], dtype=torch.long, device=options.device)
