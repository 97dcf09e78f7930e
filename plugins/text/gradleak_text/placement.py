"""Where each batch token sits, from the embedding gradients (our filter ahead of DAGER's span checks).

Let ``g_{s,p}`` be the gradient at the embedding sum of sentence ``s``, position ``p``. The word-embedding
gradient of token ``v`` and the position-embedding gradient of position ``p`` are sums of the same vectors:

    dL/dE[v] = sum_{(s,p): x_{s,p} = v} g_{s,p}            dL/dP[p] = sum_s g_{s,p}

With fewer (token, position) pairs than the width the ``g`` are linearly independent, so a token that occurs
once has ``dL/dE[v] = g_{s,p}`` and appears with coefficient 1 in the least-squares fit of ``dL/dP[p]`` on the
batch tokens' rows, and near 0 in the fits of the other positions. Tokens placed that way are subtracted
from their positions' rows; the remainder is fitted on the other tokens, and a token is kept at a position
where its coefficient exceeds ``keep``. This is a filter, not an exact test (repeated tokens tie tokens and
positions together, and least squares spreads a sum of several ``g`` over them), so it only narrows the lists
of the first layer's token filter where those admit most batch tokens everywhere (see
:mod:`gradleak_text.dager`). Measured on the first batch of 8 built-in sentences on bert-minilm: 86 of 141
tokens placed, all correctly; ~20 candidates per position instead of ~120 with ``keep`` 0.02, 197 of the
198 true pairs kept, the lost one a ``[SEP]`` (special tokens are therefore never filtered here). A token
that occurs ``c`` times gets about ``1 / c`` at its true positions, inside the fit's noise (-0.05 to 0.05)
for a comma or ``the`` seen ten times: on batches 3, 8 and 17 of the benchmark 8 to 12 true pairs of ~170
fell below 0.02, 2 to 6 below 0 (the default), none below -0.05.
"""

from __future__ import annotations

from collections.abc import Collection

import torch


def placement_filter(word: torch.Tensor, position: torch.Tensor, candidates: list[list[int]],
                     special: Collection[int], unique: float = 0.1, spread: float = 0.2,
                     keep: float = 0.0) -> tuple[list[list[int]], dict[int, torch.Tensor]]:
    """Narrow ``candidates`` (per position, token ids) with the word- and position-embedding gradients
    ``word`` ``(V, d)`` and ``position`` ``(P, d)``.

    A token is placed at ``p`` when its coefficient there is within ``unique`` of 1 and below ``spread`` in
    absolute value everywhere else. Returns the narrowed lists (a position the fit would empty keeps its
    list; ``special`` tokens stay wherever they were) and every token's coefficients over the positions
    (``[SEP]``'s rank the sentence ends)."""
    n = len(candidates)
    tokens = sorted({t for c in candidates for t in c})
    E = word[tokens].double().T  # (d, T)
    P = position[:n].double()
    A = torch.linalg.lstsq(E, P.T).solution  # (T, n): P[p] ~ sum_v A[v, p] E[v]
    placed: dict[int, int] = {}
    for i, t in enumerate(tokens):
        a = A[i]
        q = int(a.argmax())
        others = torch.cat([a[:q], a[q + 1:]]).abs()
        if abs(float(a[q]) - 1) < unique and (others.numel() == 0 or float(others.max()) < spread):
            placed[t] = q
    rest = [t for t in tokens if t not in placed]
    coefficients = {t: torch.nn.functional.one_hot(torch.tensor(q), n).double() for t, q in placed.items()}
    if rest:
        remainder = P.clone()
        for t, q in placed.items():
            remainder[q] -= word[t].double()
        B = torch.linalg.lstsq(word[rest].double().T, remainder.T).solution
        coefficients.update({t: B[j] for j, t in enumerate(rest)})
    out = []
    for p, cands in enumerate(candidates):
        kept = [t for t in cands if t in special or float(coefficients[t][p]) > keep]
        out.append(kept if any(t not in special for t in kept) or p == 0 else cands)
    return out, coefficients
