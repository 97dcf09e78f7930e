"""Label recovery from the last layer of a classifier.

Both methods read the gradient (or FedSGD-equivalent update) of the last linear layer ``W`` (``K x d``) and
its bias ``b``. For softmax cross-entropy averaged over ``n`` samples,
``dL/db_k = (1/n) sum_i (p_ik - y_ik)`` and ``dL/dW_k = (1/n) sum_i (p_ik - y_ik) h_i``: the row of a class
present in the batch collects the negative terms ``-h_i``.
"""

from __future__ import annotations

import torch

from ..errors import IncompatibleError
from ..types import Update
from ..view import AttackerView


def last_layer(view: AttackerView, update: Update) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The observed update of the last weight matrix whose first dimension is the number of classes, and of
    its bias (None when the layer has none). Deltas are turned into gradient estimates ``-delta``."""
    names = [n for n, p in view.model.named_parameters() if p.requires_grad]
    K = view.num_classes
    for i in range(len(names) - 1, -1, -1):
        t = update.tensors[names[i]]
        if t.dim() == 2 and (K is None or t.shape[0] == K):
            bias = None
            if i + 1 < len(names) and update.tensors[names[i + 1]].shape == (t.shape[0],):
                bias = update.tensors[names[i + 1]]
            sign = -1.0 if update.kind == "delta" else 1.0
            return sign * t.detach(), (sign * bias.detach() if bias is not None else None)
    raise IncompatibleError("label recovery needs a classifier whose last layer is a linear map onto the classes")


def idlg_label(view: AttackerView, update: Update) -> torch.Tensor:
    """iDLG (Zhao et al. 2020), batch of one: the true class is the row of the last-layer weight gradient
    whose entries sum to a negative value (the only row with ``p_k - y_k < 0``). With non-negative
    activations ``h`` (sigmoid, ReLU) the sign is exact."""
    W, _ = last_layer(view, update)
    return W.sum(dim=1).argmin().reshape(1)


def count_labels(view: AttackerView, update: Update, n: int | None = None) -> torch.Tensor:
    """Label counts of a batch (Wainakh et al. 2022, "User-Level Label Leakage from Gradients in Federated
    Learning", LLG), bias-corrected; returns ``n`` class ids, sorted.

    Stage 1: every class whose last-layer signal ``g_k`` is negative is present once; the *impact* of one
    sample is ``m = sum_{g_k<0} g_k / n`` (with the bias gradient ``g_k = (1/n) sum_i (p_ik - y_ik)``; without a
    bias, the row sums of ``W``'s gradient and LLG's ``(1 + 1/K)`` correction). Stage 2: subtract ``m`` from
    each selected class and repeatedly add the class with the most negative remaining signal, subtracting
    ``m`` again, until ``n`` labels are chosen. Using the bias gradient is the "bias-corrected" variant: it
    needs no white-box offset estimate because ``sum_k p_ik = 1`` makes ``sum_k g_k = 0`` exactly.
    """
    n = n or view.batch_size
    W, b = last_layer(view, update)
    K = W.shape[0]
    if b is not None:
        g = b.clone().double()
        scale = 1.0
    else:
        g = W.sum(dim=1).double()
        scale = 1.0 + 1.0 / K
    present = (g < 0).nonzero().flatten().tolist()
    if not present:
        present = [int(g.argmin())]
    present = sorted(present, key=lambda k: float(g[k]))[:n]
    impact = float(g[present].sum()) * scale / n
    labels = list(present)
    g[present] -= impact
    while len(labels) < n:
        k = int(g.argmin())
        labels.append(k)
        g[k] -= impact
    return torch.tensor(sorted(labels), device=W.device, dtype=torch.long)
