"""The client's BatchNorm batch statistics, as a training-mode attacker obtains them (Valadi et al. 2025).

A client training in train mode normalises with its batch's statistics and moves the running buffers
towards them: ``r' = (1 - m) r + m s`` (PyTorch, momentum ``m``, ``s`` the batch mean, or the *unbiased*
batch variance for ``running_var``). A server that sees the buffers after local training (FedAvg sends them)
and knows those it sent solves for ``s`` (:func:`from_running`); one that does not estimates ``s`` from public
data of the same distribution (:func:`from_proxy`).
"""

from __future__ import annotations

import copy

import torch

from gradleak import AttackerView, Batch, IncompatibleError, Update

from .priors import batch_norm_layers, input_stats

Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _elements_per_channel(view: AttackerView) -> dict[str, int]:
    """``n`` of each BN layer: batch size times the spatial size of its input (a dry forward of zeros)."""
    model = copy.deepcopy(view.model).eval()
    counts: dict[str, int] = {}
    for name, module in batch_norm_layers(model):
        module.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
            name, inp[0].numel() // inp[0].shape[1]))
    with torch.no_grad():
        zeros = torch.zeros((view.batch_size, *view.sample_shape), device=view.device)
        view.forward(model, Batch(zeros, None, "image"))
    return counts


def from_running(view: AttackerView, update: Update) -> Stats:
    """Invert the running-statistics update: ``s = (r' - (1 - m)^K r) / (1 - (1 - m)^K)`` per BN layer.

    ``K`` is the number of local steps (1 for FedSGD); for ``K > 1`` this assumes the batch statistics stay
    the same across the steps (one full batch, small learning rate), which we state rather than hide. The
    recovered variance is the unbiased one; it is turned into the biased variance BN normalises with by
    ``(n - 1) / n``, ``n`` = batch x spatial elements per channel (as LeakPro's ``gia_running``).
    """
    layers = batch_norm_layers(view.model)
    if not layers:
        raise IncompatibleError("gia-running needs a model with BatchNorm layers (e.g. vision/resnet18)")
    if not view.model.training:
        raise IncompatibleError("gia-running attacks train-mode clients, whose BatchNorm running buffers move; "
                                "the client runs in eval mode: add --set mode=train (or use inverting-gradients)")
    steps = 1 if update.kind == "gradient" else int(update.local_steps) * int(update.epochs)
    counts = _elements_per_channel(view)
    stats: Stats = {}
    for name, module in layers:
        key_m, key_v = f"{name}.running_mean", f"{name}.running_var"
        if key_m not in update.buffers or key_v not in update.buffers:
            raise IncompatibleError(f"gia-running needs the client's BatchNorm buffers after training ({key_m}), "
                                    "which this update does not carry (aggregated updates drop them)")
        if module.momentum is None:
            tracked = float(update.buffers[f"{name}.num_batches_tracked"])
            keep = (tracked - steps) / tracked
        else:
            keep = (1.0 - float(module.momentum)) ** steps
        mean = (update.buffers[key_m] - keep * module.running_mean) / (1.0 - keep)
        var = (update.buffers[key_v] - keep * module.running_var) / (1.0 - keep)
        n = counts[name]
        stats[name] = (mean.detach(), (var * (n - 1) / n).clamp_min(0).detach())
    return stats


def from_proxy(view: AttackerView, proxy: Batch, max_batches: int = 32) -> Stats:
    """Estimate the batch statistics as their mean over proxy batches of the client's batch size.

    Up to ``max_batches`` consecutive batches of ``proxy`` run through a copy of the model in train mode
    (LeakPro's ``gia_estimate`` reads one proxy pass; averaging over several batches of the client's size
    lowers the estimate's variance without biasing it).
    """
    layers = batch_norm_layers(view.model)
    if not layers:
        raise IncompatibleError("gia-estimate needs a model with BatchNorm layers (e.g. vision/resnet18)")
    model = copy.deepcopy(view.model).train()
    for _, module in batch_norm_layers(model):
        module.track_running_stats = False  # batch statistics, never touching the copy's buffers
    sums: dict[str, list[torch.Tensor]] = {}
    for name, module in batch_norm_layers(model):
        module.register_forward_hook(lambda mod, inp, out, name=name: sums.setdefault(name, []).append(
            torch.stack(input_stats(inp[0]))))
    bs = min(view.batch_size, len(proxy))
    data = proxy.data.to(view.device)
    with torch.no_grad():
        for k in range(min(max_batches, max(1, len(proxy) // bs))):
            view.forward(model, Batch(data[k * bs:(k + 1) * bs], None, "image"))
    return {name: tuple(torch.stack(v).mean(0).unbind(0)) for name, v in sums.items()}  # type: ignore[misc]
