"""Soteria: prune the gradient of the representation layer where the representation leaks the input most."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..components import ClientContext
from ..config import param
from ..errors import ConfigError, IncompatibleError
from ..types import Batch, Update
from .defenses import UpdateDefense
from .utility import outputs


@dataclass(frozen=True)
class SoteriaConfig:
    ratio: float = param(0.6, "fraction of representation features whose gradient is pruned, in (0, 1]")
    layer: str = param("", "the linear layer whose input is the representation (default: the model's last nn.Linear)")

    def validate(self, owner: str) -> None:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"{owner}: ratio must be in (0, 1] (the fraction of features pruned), got {self.ratio}")


def _linear(model: torch.nn.Module, name: str) -> tuple[str, torch.nn.Linear]:
    modules = dict(model.named_modules())
    if name:
        module = modules.get(name)
        if not isinstance(module, torch.nn.Linear):
            linears = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)]
            raise ConfigError(f"soteria: layer '{name}' is not a linear layer of the model; choose one of {linears}")
        return name, module
    # The last trained linear layer: a frozen copy (a DQN's target network) sends no gradient to prune.
    linears = [(n, m) for n, m in modules.items() if isinstance(m, torch.nn.Linear) and m.weight.requires_grad]
    if not linears:
        raise IncompatibleError("soteria prunes the gradient of a linear layer's input features, but the model has no nn.Linear")
    return linears[-1]


def _input_leaf(context: ClientContext) -> tuple[Batch, dict[str, Any], list[Any]]:
    """The batch to run with a differentiable input, a dict that will hold that input ``"x"``, and hooks to remove.

    Continuous data is its own input (images, a PyG batch's node features ``x``); otherwise the input is the
    first continuous tensor the model computes on (the output of an ``nn.Embedding`` for token ids, the float
    input of the first layer for spike trains or transitions).
    """
    data, holder, hooks = context.batch.data, {}, []
    if isinstance(data, torch.Tensor) and data.is_floating_point():
        x = data.detach().clone().requires_grad_(True)
        holder["x"] = x
        return context.batch.replace(data=x), holder, hooks
    node_x = getattr(data, "x", None)
    if isinstance(node_x, torch.Tensor) and node_x.is_floating_point() and hasattr(data, "clone"):
        clone = data.clone()
        clone.x = node_x.detach().clone().requires_grad_(True)
        holder["x"] = clone.x
        return context.batch.replace(data=clone), holder, hooks
    # Otherwise (token ids, spike trains, transition tuples, graphs without node features): the first floating
    # tensor that enters a leaf module, e.g. the embedding lookup's output or the state fed to the first layer.
    def pre_hook(module, args):
        if "x" in holder or not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
            return None
        holder["x"] = args[0].detach().requires_grad_(True)
        return (holder["x"], *args[1:])

    def post_hook(module, inputs, output):
        if "x" in holder or not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return None
        holder["x"] = output.detach().requires_grad_(True)
        return holder["x"]

    for module in context.model.modules():
        if next(module.children(), None) is None:
            hooks.append(module.register_forward_pre_hook(pre_hook))
            if isinstance(module, torch.nn.Embedding):
                hooks.append(module.register_forward_hook(post_hook))
    return context.batch, holder, hooks


def representation_scores(context: ClientContext, layer: str = "") -> tuple[str, torch.Tensor]:
    """``(layer name, s)`` with ``s_f = sum_n ||d r_{n,f} / d X_n|| / |r_{n,f}|`` for every input feature f.

    ``r`` is the input of the linear layer (the representation), ``X`` the client's input. A small ``s_f``
    means that perturbing ``r_f`` moves the reconstructed input ``X`` the most (Soteria, Eq. 7); the official
    code prunes the features of smallest ``s_f``.
    """
    name, module = _linear(context.model, layer)
    batch, holder, hooks = _input_leaf(context)
    captured: dict[str, torch.Tensor] = {}
    hooks.append(module.register_forward_hook(lambda m, inputs, out: captured.setdefault("r", inputs[0])))
    try:
        with torch.enable_grad():
            outputs(context, {}, batch=batch)
    except RuntimeError as exc:  # the input hook does not fit a model that calls its layers in its own way
        raise IncompatibleError(f"soteria cannot differentiate layer '{name}''s input by the model's input on this "
                                f"case ({str(exc).splitlines()[0]})") from None
    finally:
        for h in hooks:
            h.remove()
    if "r" not in captured or "x" not in holder:
        raise IncompatibleError(f"soteria: the layer '{name}' or the input was not reached by the model's forward pass")
    try:
        return name, _scores(captured["r"], holder["x"])
    except RuntimeError as exc:  # e.g. a model that calls its layers functionally on several inputs (RL targets)
        raise IncompatibleError(f"soteria cannot relate layer '{name}''s input to the model's input on this case "
                                f"({str(exc).splitlines()[0]}); choose another layer=") from None


def _scores(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    F = r.shape[-1]
    rows = r.reshape(-1, F)
    per_sample = rows.shape[0] == x.shape[0]
    norms = []
    eye = torch.eye(F, device=r.device, dtype=r.dtype)
    for start in range(0, F, 128):
        chunk = eye[start:start + 128]
        # One-hot grad outputs in column f for every row: the gradient of sum_n r_{n,f} w.r.t. X.
        grad_out = chunk[:, None, :].expand(len(chunk), rows.shape[0], F).reshape(len(chunk), *r.shape)
        (g,) = torch.autograd.grad(r, x, grad_outputs=grad_out, retain_graph=True, is_grads_batched=True)
        if per_sample:
            norms.append(g.reshape(len(chunk), x.shape[0], -1).norm(dim=-1))
        else:
            norms.append(g.reshape(len(chunk), -1).norm(dim=-1, keepdim=True))
    dr_dx = torch.cat(norms).detach()  # (F, N) or (F, 1)
    mag = rows.detach().abs().T  # (F, rows)
    if per_sample:
        return (dr_dx / (mag + 1e-10)).sum(1)
    return dr_dx[:, 0] / (mag.sum(1) + 1e-10)


class Soteria(UpdateDefense):
    """Soteria (Sun et al., CVPR 2021): prune the representation layer's gradient where the representation leaks most.

    "Provable Defense against Privacy Leakage in Federated Learning from Representation Perspective". The
    representation ``r`` is the input of one linear layer (the last by default, the fully connected layer of
    the paper's models); for each feature ``f`` the score ``sum_n ||dr_{n,f}/dX_n|| / |r_{n,f}|``
    (:func:`representation_scores`) is small where removing ``r_f`` perturbs the input reconstructed from
    ``r`` the most. The ``ratio`` fraction of features with the smallest scores have their column of the
    layer's weight gradient set to zero (the bias and every other layer are sent unchanged), as the official
    code does with ``np.percentile(scores, pruning_rate)``. Default ``ratio=0.6``: the official command for
    the inverting-gradients attack (``--pruning_rate=60``). We divide by ``|r|`` rather than the signed ``r``
    of the code, which only differs for negative features (ReLU and sigmoid representations are >= 0).
    """

    name = "soteria"
    Config = SoteriaConfig
    paper = "Sun et al. 2021, Provable Defense against Privacy Leakage in Federated Learning from Representation Perspective (CVPR)"

    def apply_update(self, update: Update, generator: torch.Generator, context: ClientContext | None = None) -> Update:
        if context is None:
            raise ConfigError("soteria computes the representation on the client's batch and needs the client's context")
        layer, scores = representation_scores(context, self.config.layer)
        key = f"{layer}.weight"
        if key not in update.tensors:
            raise IncompatibleError(f"soteria: the update has no tensor '{key}' (the layer is frozen?); choose another layer=")
        k = int(math.floor(self.config.ratio * scores.numel() + 1e-9))
        if k == 0:
            return update
        pruned = torch.topk(scores, k, largest=False).indices
        mask = torch.ones_like(scores)
        mask[pruned] = 0
        tensors = dict(update.tensors)
        tensors[key] = tensors[key] * mask.to(tensors[key])
        return update.with_tensors(tensors)
