"""Peeling: subtract a recovered sentence's own gradient from the update (our extension of DAGER).

A FedSGD update of a model without batch statistics (BERT, GPT-2) is the mean of per-sample gradients,
``U = (1/B) sum_i grad L(x_i, y_i)``, and the server holds the model. Once a sentence ``x_i`` is recovered
exactly, its gradient under the right label is computable, and ``U - grad L(x_i, y) / B`` is the exact update
of the rest of the batch: every span DAGER reads loses that sentence's vectors. That matters for encoders: a
first layer sees ``LN(E[v] + P[p])``, so once a batch holds more (token, position) pairs than distinct tokens
plus positions, its span admits most batch tokens at every position and the token filter says little; a few
sentences peeled off bring the rest back below that count, where the filter is exact again.

The label is not known per sentence: every class is tried (the recovered label set where there are many),
and the one whose subtraction lowers the rank of the second layer's gradient is kept; there the rank drops
by the sentence's number of distinct (token, context) vectors, while a wrong label leaves a rank-one change
on every one of them and the rank where it was. A sentence that occurs ``k`` times in the batch is
subtracted ``k`` times over (``k = 1, 2, ...`` are tried in turn). Nothing is subtracted when no label lowers
the rank (a defense changed the gradient, or the update is not one FedSGD step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradleak import Batch, Update
from gradleak.view import AttackerView

from .data import pack
from .span import Architecture, input_span


class Peeler:
    """The update minus the gradients of the sentences recovered so far; :attr:`update` is the residual."""

    def __init__(self, arch: Architecture, view: AttackerView, update: Update, names: Sequence[str],
                 tokenizer: str, style: str, pad_id: int, rank_tol: float) -> None:
        self.arch, self.view, self.rank_tol, self.original = arch, view, rank_tol, update
        self.tokenizer, self.style, self.pad_id = tokenizer, style, pad_id
        self.names = [n for n in names if n in update.tensors]
        self.update = update.with_tensors({n: update.tensors[n].detach().double() for n in self.names})
        self.scale = _scale(update)
        self.rank2 = input_span(arch.gradient(self.update, 1), rank_tol).rank
        self.peeled = 0

    @property
    def available(self) -> bool:
        """Whether the update is one plain gradient step, so that a sentence's share of it is known."""
        return self.scale is not None

    def peel(self, sentence: Sequence[int], most: int = 1) -> bool:
        """Subtract ``sentence``'s gradient (up to ``most`` copies) under the label that lowers the second
        layer's rank; returns whether it did."""
        if self.scale is None:
            return False
        grads = {label: self._gradient(sentence, label) for label in self._labels()}
        for copies in range(1, max(most, 1) + 1):
            best = None
            for g in grads.values():
                residual = {n: self.update.tensors[n] - copies * self.scale * g[n] for n in self.names}
                rank = input_span(self.arch.gradient(self.update.with_tensors(residual), 1), self.rank_tol).rank
                if rank < self.rank2 and (best is None or rank < best[0]):
                    best = (rank, residual)
            if best is not None:
                self.rank2, self.update = best[0], self.update.with_tensors(best[1])
                self.peeled += copies
                return True
        return False

    def _labels(self) -> list[int | None]:
        view = self.view
        if view.num_classes is None:
            return [None]
        if view.labels is not None:
            return sorted(set(view.labels.tolist()))
        if view.num_classes <= 16:
            return list(range(view.num_classes))
        from gradleak.engine import count_labels

        return sorted(set(count_labels(view, self.original).tolist()))

    def _gradient(self, sentence: Sequence[int], label: int | None) -> dict[str, torch.Tensor]:
        view = self.view
        model = view.model
        params = dict(model.named_parameters())
        device = params[self.names[0]].device
        data = pack([list(sentence)], self.tokenizer, self.style, self.pad_id, device)
        labels = None if label is None else torch.tensor([label], device=device)
        with torch.enable_grad():
            loss = view.loss(view.forward(model, Batch(data, labels, "text")), labels)
            grads = torch.autograd.grad(loss, [params[n] for n in self.names], allow_unused=True)
        return {n: (torch.zeros_like(params[n]) if g is None else g).double() for n, g in zip(self.names, grads)}


def _scale(update: Update) -> float | None:
    """A sample's weight in the update: ``1/B`` for a mean gradient, ``-lr/B`` for one local SGD step."""
    if update.num_samples <= 0 or update.local_steps != 1 or update.epochs != 1 or update.num_clients != 1:
        return None
    if update.kind == "gradient":
        return 1.0 / update.num_samples
    if update.local_lr is not None and update.local_batch_size in (None, update.num_samples):
        return -float(update.local_lr) / update.num_samples
    return None
