"""Shared pieces of the exact attacks: finding the layer that sees the pixels, reading its gradient, labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gradleak import AttackerView, IncompatibleError, Update


@dataclass(frozen=True)
class InputLayer:
    """The first linear layer of a model when it acts on the flattened input image."""

    name: str
    module: nn.Linear
    #: The module applied right after it (its activation), or None when it is the last one.
    after: nn.Module | None


def leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules without children, in registration order (the order a feed-forward ``Sequential`` runs)."""
    return [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]


def input_layer(model: nn.Module, sample_shape: tuple[int, ...], who: str) -> InputLayer:
    """The linear layer with a bias that reads the raw pixels (``prod(sample_shape)`` features), or a one-line
    :class:`IncompatibleError` naming the requirement."""
    size = math.prod(sample_shape)
    chain = leaves(model)
    for i, (name, module) in enumerate(chain):
        if isinstance(module, nn.Linear):
            if module.in_features == size and module.bias is not None:
                return InputLayer(name, module, chain[i + 1][1] if i + 1 < len(chain) else None)
            break
        if any(True for _ in module.parameters(recurse=False)):
            break  # a convolution or normalization processes the pixels first
    raise IncompatibleError(f"{who} needs a linear layer with a bias on the flattened input image ({size} "
                            "features), as in the case vision/mlp; this model processes the pixels otherwise")


def layer_gradients(update: Update, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The observed weight and bias gradients of layer ``name`` in float64 (FedAvg deltas negated: one local
    step's delta is ``-lr`` times the gradient, and the exact attacks are invariant to the scale)."""
    try:
        w, b = update.tensors[f"{name}.weight"], update.tensors[f"{name}.bias"]
    except KeyError as exc:
        raise IncompatibleError(f"the update holds no tensor {exc.args[0]!r}; the model sent is not the one "
                                "the attack expected") from None
    sign = -1.0 if update.kind == "delta" else 1.0
    return sign * w.detach().double(), sign * b.detach().double()


def images(flat: torch.Tensor, view: AttackerView) -> torch.Tensor:
    """``(n, prod(sample_shape))`` -> ``(n, *sample_shape)`` in the model's dtype (values kept as recovered)."""
    dtype = next(view.model.parameters()).dtype
    return flat.reshape(len(flat), *view.sample_shape).to(dtype)


def labels_from_inputs(view: AttackerView, update: Update, inputs: torch.Tensor) -> torch.Tensor:
    """Labels of exactly recovered inputs: with the features ``H`` (``n x d``) the model computes from them, the
    last layer's gradient ``dW = dZ^T H`` gives ``dZ^T = dW H^+``; a sample's class is its most negative
    logit gradient (``p - y`` is negative only at the label). The true labels when the threat model grants
    them; the bias-corrected count method when ``H`` has no full row rank."""
    if view.labels is not None:
        return view.labels
    from gradleak.engine import count_labels

    linears = [(n, m) for n, m in leaves(view.model) if isinstance(m, nn.Linear)]
    if not linears:
        return count_labels(view, update)
    name, last = linears[-1]
    captured: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda mod, args, out: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            view.forward(view.model, inputs)
    finally:
        handle.remove()
    H = captured[0].double().flatten(1)
    dW, db = layer_gradients(update, name)
    A = torch.cat([H, torch.ones(len(H), 1, dtype=H.dtype, device=H.device)], 1)
    G = torch.cat([dW, db[:, None]], 1)
    if torch.linalg.matrix_rank(A) < len(A):
        return count_labels(view, update)
    dZ = torch.linalg.lstsq(A.T, G.T).solution  # (n, K): A^T dZ = G^T
    return dZ.argmin(1).to(view.device)


def partial_labels(view: AttackerView, update: Update, inputs: torch.Tensor, failed: dict[int, str]) -> torch.Tensor:
    """Labels when only some inputs are exact: :func:`labels_from_inputs` needs the whole batch, so with any
    sample failed (or mixed) the known labels or the bias-corrected counts (an unordered multiset) are used."""
    if not failed:
        return labels_from_inputs(view, update, inputs)
    if view.labels is not None:
        return view.labels
    from gradleak.engine import count_labels

    return count_labels(view, update)
