"""Malicious modules a server puts in front of (or into) a model: imprint bins and trap weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from gradleak import AttackerView, IncompatibleError


class ImprintBlock(nn.Module):
    """``x + linear1(ReLU(linear0(flatten(x))))``: a fully connected ReLU layer whose rows the server chooses.

    With ``back=None``, ``linear1`` maps every unit back onto every pixel with one constant weight ``gain``, so
    each unit k receives the same output gradient ``gain * sum(dL/dout)`` from a sample, whatever k (what the
    imprint's bin differences need); ``back`` gives other columns (trap weights use random ones, so that
    units mixing several samples get distinct ratios). The residual keeps the model's function nearly as it was.
    """

    def __init__(self, sample_shape: tuple[int, ...], weight: torch.Tensor, bias: torch.Tensor,
                 gain: float, back: torch.Tensor | None = None) -> None:
        super().__init__()
        size = math.prod(sample_shape)
        rows = weight.shape[0]
        self.sample_shape = tuple(sample_shape)
        self.linear0 = nn.Linear(size, rows, device=weight.device, dtype=weight.dtype)
        self.relu = nn.ReLU()
        self.linear1 = nn.Linear(rows, size, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.linear0.weight.copy_(weight)
            self.linear0.bias.copy_(bias)
            if back is None:
                self.linear1.weight.fill_(gain)
            else:
                self.linear1.weight.copy_(gain * back)
            self.linear1.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.linear0(x.flatten(1)))
        return x + self.linear1(h).reshape(x.shape)


class Imprinted(nn.Module):
    """A model behind an :class:`ImprintBlock`; parameters are named ``imprint.*`` and ``model.*``."""

    def __init__(self, imprint: ImprintBlock, model: nn.Module) -> None:
        super().__init__()
        self.imprint = imprint
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.imprint(x))


def check_image_model(view: AttackerView, who: str) -> None:
    """Refuse models whose input is not one image tensor: a block in front of them cannot be inserted."""
    if len(view.sample_shape) != 3:
        raise IncompatibleError(f"{who} inserts a module in front of a model taking image tensors (N, C, H, W); "
                                f"this case's samples have shape {view.sample_shape}")


def trap_weights(rows: int, size: int, sigma: float, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Trap weights of Boenisch et al.: per row, half the entries are ``-|N(0, sigma^2)|`` and the other half the
    same magnitudes times ``scale`` (< 1), positive, at random positions: every row sums to a negative value,
    so a unit fires for few inputs and its gradient often comes from one sample only."""
    half = size // 2
    mags = torch.randn((rows, half), generator=generator, device=generator.device).abs() * sigma
    perm = torch.rand((rows, size), generator=generator, device=generator.device).argsort(1)
    w = torch.zeros((rows, size), device=generator.device)
    w.scatter_(1, perm[:, :half], -mags)
    w.scatter_(1, perm[:, half: 2 * half], scale * mags)
    return w
