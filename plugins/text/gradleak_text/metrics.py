"""Text leakage metrics: ROUGE-1/2/L F-scores (the rouge-score package), token accuracy, exact recovery.

All compare decoded strings (the tokenizer's round trip, special tokens removed) except ``token_acc``, which
compares token ids position by position. Samples arrive already matched by the runner (order-invariant).
"""

from __future__ import annotations

import functools

import torch

from gradleak import Batch, Metric, import_optional


@functools.lru_cache(maxsize=1)
def _scorer():
    rouge = import_optional("rouge_score.rouge_scorer", "gradleak-text", "ROUGE metrics")
    return rouge.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)


@functools.lru_cache(maxsize=65536)
def rouge_scores(recon: str, truth: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of one reconstructed sentence against its truth."""
    scores = _scorer().score(truth, recon)
    return {k: float(v.fmeasure) for k, v in scores.items()}


class _Rouge(Metric):
    modalities = frozenset({"text"})
    paper = "Lin 2004, ROUGE: A Package for Automatic Evaluation of Summaries"
    key = "rouge1"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        values = [rouge_scores(r, t)[self.key] for r, t in zip(recon.data.texts(), truth.data.texts())]
        return torch.tensor(values, dtype=torch.float64)


class Rouge1(_Rouge):
    """ROUGE-1 F-score: unigram overlap between reconstructed and true sentence."""

    name = "rouge1"
    key = "rouge1"


class Rouge2(_Rouge):
    """ROUGE-2 F-score: bigram overlap between reconstructed and true sentence."""

    name = "rouge2"
    key = "rouge2"


class RougeL(_Rouge):
    """ROUGE-L F-score (``rouge_l``: metric names are snake_case): longest common subsequence of reconstructed and true sentence."""

    name = "rouge_l"
    key = "rougeL"


class TokenAccuracy(Metric):
    """Fraction of the true sentence's token positions (special start/end excluded) holding the true token id."""

    name = "token_acc"
    modalities = frozenset({"text"})

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        values = []
        for r, t in zip(recon.data.sequences(), truth.data.sequences()):
            # Positions 1..n-2: the start and end tokens of the layout are known to every attacker.
            inner = range(1, len(t) - 1)
            values.append(sum(1 for i in inner if i < len(r) and r[i] == t[i]) / max(len(inner), 1))
        return torch.tensor(values, dtype=torch.float64)


class Exact(Metric):
    """1 when the decoded reconstruction equals the tokenizer's round trip of the true sentence, else 0."""

    name = "exact"
    modalities = frozenset({"text"})

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        return torch.tensor([float(r == t) for r, t in zip(recon.data.texts(), truth.data.texts())],
                            dtype=torch.float64)


METRICS = (Rouge1, Rouge2, RougeL, TokenAccuracy, Exact)
