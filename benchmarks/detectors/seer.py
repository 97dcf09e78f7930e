"""A SEER-style learned active attack on ``vision/mlp``: a disaggregator trained on public data.

Garov, Dimitrov, Jovanovic, Vechev, "Hiding in Plain Sight: Disguising Data Stealing Attacks in Federated
Learning" (SEER), ICLR 2024: instead of handcrafting weights, the server *trains* the shared model's parameters
on public data so that the gradient of a client batch is dominated by one sample with a chosen property (here
the brightest image), and reads that sample back. Our small version (no GPU-days): the first layer (W1, b1) of
the MLP, the disaggregator, is trained with Adam on random batches of the public photo crops so that its units
fire for the batch's brightest image and stay silent for the others (hinge losses on the pre-activations, with
margin 1: mean relu(1 - z_target) + mean relu(1 + z_other)); starting from the honest initialisation, the rest
of the model untouched. The readout takes the unit ratios dL/dW1_i / dL/db1_i and returns the value shared by the most units
(units firing for one sample alone all give that sample exactly; mixtures differ from unit to unit). ``benchmarks/detectors/run.py`` reports the PSNR it
reaches on the private crops beside the detection rates.
"""

from __future__ import annotations

import copy

import torch


def train_seer(model: torch.nn.Module, public: torch.Tensor, labels: torch.Tensor, steps: int = 300,
               batch: int = 8, lr: float = 1e-3, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, list[float]]:
    """Return the malicious model, the readout vector (ones) and the training losses."""
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model)
    first = model.layers[0]
    opt = torch.optim.Adam([first.weight, first.bias], lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randperm(len(public), generator=gen)[:batch]
        x = public[idx].flatten(1)
        t = int(x.mean(1).argmax())
        z = first(x)
        other = torch.cat([z[:t], z[t + 1:]])
        loss = torch.relu(1 - z[t]).mean() + torch.relu(1 + other).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model, torch.ones(first.out_features, dtype=first.weight.dtype), losses


def seer_readout(update: dict[str, torch.Tensor], a: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """The ratio shared by the most units (``a`` weights which units are read; ones: all)."""
    w, b = update["layers.0.weight"].double(), update["layers.0.bias"].double()
    keep = (b.abs() > 1e-3 * b.abs().max()) & (a != 0)
    ratios = w[keep] / b[keep, None]
    dist = torch.cdist(ratios, ratios) / ratios.norm(dim=1).clamp_min(1e-12)[:, None]
    return ratios[(dist < tol).sum(1).argmax()].float()
