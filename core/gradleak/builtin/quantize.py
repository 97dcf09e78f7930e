"""Update quantization: every tensor of the update sent on a uniform grid of ``2**bits`` levels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..components import ClientContext
from ..config import param
from ..errors import ConfigError
from ..types import Update
from .defenses import UpdateDefense


@dataclass(frozen=True)
class QuantizeConfig:
    bits: int = param(8, "bits per entry: 2**bits levels evenly spaced between each tensor's min and max (1 to 32)")
    stochastic: bool = param(False, "round up or down at random with probability by distance (unbiased), "
                                    "instead of to the nearest level")

    def validate(self, owner: str) -> None:
        if not 1 <= self.bits <= 32:
            raise ConfigError(f"{owner}: bits must be an integer from 1 to 32, got {self.bits}")


def quantize_tensor(t: torch.Tensor, bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``t`` on the grid ``lo + k * step``, ``k = 0 .. 2**bits - 1``, ``step = (max - min) / (2**bits - 1)``.

    Nearest rounding (``generator`` None) errs by at most ``step / 2``; stochastic rounding by less than
    ``step`` and is unbiased. A constant tensor is sent exactly.
    """
    lo, hi = t.min(), t.max()
    levels = 2**bits - 1
    if not bool(hi > lo):
        return t.clone()
    # The grid in float64: 2**32 levels exceed float32's mantissa.
    work = t.double()
    step = (hi.double() - lo.double()) / levels
    scaled = (work - lo.double()) / step
    if generator is None:
        k = scaled.round()
    else:
        u = torch.rand(t.shape, generator=generator, device=generator.device, dtype=torch.float64).to(t.device)
        k = scaled.floor() + (u < scaled - scaled.floor()).to(scaled.dtype)
    return (lo.double() + k.clamp(0, levels) * step).to(t.dtype)


class Quantize(UpdateDefense):
    """Low-precision updates: each tensor sent on a uniform ``bits``-bit grid spanning its own range.

    Zhu, Liu, Han 2019 ("Deep Leakage from Gradients", Sec. 5) test low-precision gradients (half precision and
    int8) as a defense; the quantizer here is the standard per-tensor min-max uniform quantizer, with nearest
    rounding by default and the unbiased stochastic rounding of QSGD (Alistarh et al., NeurIPS 2017) as an
    option. The grid is per tensor (each parameter has its own scale, as int8 schemes do); ``bits=1`` sends
    only each tensor's min or max per entry. The server sees the de-quantized values.
    """

    name = "quantize"
    Config = QuantizeConfig
    paper = "Zhu, Liu, Han 2019 (Deep Leakage from Gradients), Sec. 5; Alistarh et al. 2017 (QSGD)"

    def apply_update(self, update: Update, generator: torch.Generator, context: ClientContext | None = None) -> Update:
        gen = generator if self.config.stochastic else None
        return update.with_tensors({k: quantize_tensor(t, self.config.bits, gen) for k, t in update.tensors.items()})
