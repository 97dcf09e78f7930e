"""Spike encodings of static images, their decoding back to images, and the attacker's relaxations.

A spiking case feeds its network a tensor ``(N, T, C, H, W)``: one frame per time step. How an image becomes
that tensor is the *encoding* (Eshraghian et al., "Training Spiking Neural Networks Using Lessons From Deep
Learning", Proc. IEEE 2023, section 2; ``snntorch.spikegen``):

- ``direct``: the image is injected as an input current at every step (``x_t = x``); continuous.
- ``rate``: Bernoulli spikes with the pixel intensity as firing probability (``x_t ~ Bernoulli(x)``), drawn by
  the client with its own generator.
- ``latency``: each pixel fires once, brighter earlier. We use snntorch's linear, normalised latency code
  (``spikegen.latency(..., linear=True, normalize=True, clip=True)``): spike time ``round((1 - x)(T - 1))``,
  no spike for pixels below :data:`LATENCY_THRESHOLD`.
- ``events``: frames binned from event-camera streams (``gradleak_snn.events``); no image behind them.

:func:`relax` is what a generic optimization attack (DLG, iDLG, Inverting Gradients) optimises through: a
continuous candidate image mapped differentiably to the network's input.

- direct: exact (the encoding is already differentiable).
- rate: the *expected* spike train ``E[x_t] = x`` at every step. We chose expected rates over a
  straight-through Bernoulli sample because the attack's objective must be deterministic for L-BFGS (DLG's
  optimizer) and its line search; the price is that the client's sampling noise is never modelled, which is
  part of why rate-coded gradients leak less.
- latency: the spike time ``t*(x) = (1 - x)(T - 1)`` is spread linearly over its two neighbouring steps
  (``s_t = max(0, 1 - |t - t*|)``), gated by ``min(1, x / threshold)``: the exact code wherever ``t*`` is an
  integer, and differentiable in ``x`` everywhere else.

:func:`decode_image` turns any spike tensor (true or reconstructed) back into an image ``(N, C, H, W)`` in
``[0, 1]``; image metrics (PSNR, SSIM, MSE) compare decoded images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Kind = Literal["direct", "rate", "latency", "events"]
#: The encodings of static images, as ``--set encoding=...`` accepts them.
IMAGE_ENCODINGS: tuple[str, ...] = ("direct", "rate", "latency")
#: Pixels darker than this never fire under latency coding (snntorch's default ``threshold=0.01``).
LATENCY_THRESHOLD = 0.01


@dataclass(frozen=True)
class Encoding:
    """How a sample reaches the network: ``kind``, ``steps`` (T) and the shape of one frame ``(C, H, W)``."""

    kind: Kind
    steps: int
    frame_shape: tuple[int, ...]

    @property
    def binary(self) -> bool:
        """Whether the network sees spikes (0/1) rather than currents."""
        return self.kind != "direct"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.steps, *self.frame_shape)


def encode(images: torch.Tensor, kind: Kind, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` images in ``[0, 1]`` -> ``(N, T, C, H, W)`` network inputs under encoding ``kind``."""
    x = images.clamp(0.0, 1.0)
    frames = x.unsqueeze(1).expand(x.shape[0], steps, *x.shape[1:])
    if kind == "direct":
        return frames.contiguous()
    if kind == "rate":
        return torch.bernoulli(frames.contiguous(), generator=generator)
    if kind == "latency":
        when = torch.round((1.0 - x) * (steps - 1)).long()
        t = torch.arange(steps, device=x.device).view(1, steps, *([1] * (x.dim() - 1)))
        fires = (x >= LATENCY_THRESHOLD).unsqueeze(1)
        return ((t == when.unsqueeze(1)) & fires).to(x.dtype)
    raise ValueError(f"cannot encode images as {kind!r}; choose one of {', '.join(IMAGE_ENCODINGS)}")


def relax(x: torch.Tensor, encoding: Encoding) -> torch.Tensor:
    """Candidate images ``(..., C, H, W)`` -> differentiable network inputs ``(..., T, C, H, W)``."""
    steps = encoding.steps
    lead = x.dim() - len(encoding.frame_shape)
    if encoding.kind in ("direct", "rate"):
        return x.unsqueeze(lead).expand(*x.shape[:lead], steps, *x.shape[lead:])
    if encoding.kind == "latency":
        xc = x.clamp(0.0, 1.0)
        when = ((1.0 - xc) * (steps - 1)).unsqueeze(lead)
        shape = [1] * when.dim()
        shape[lead] = steps
        t = torch.arange(steps, device=x.device, dtype=x.dtype).view(shape)
        gate = (xc / LATENCY_THRESHOLD).clamp(max=1.0).unsqueeze(lead)
        return (1.0 - (t - when).abs()).clamp(min=0.0) * gate
    raise ValueError(f"encoding {encoding.kind!r} has no image relaxation; optimise its spike tensor instead")


def decode_image(spikes: torch.Tensor, kind: str) -> torch.Tensor:
    """``(N, T, C, H, W)`` -> images ``(N, C, H, W)`` in ``[0, 1]``: the time mean (direct, rate, events) or the
    intensity of the mean spike time (latency; 0 where a pixel carries less than half a spike)."""
    s = spikes.clamp(0.0, 1.0)
    if kind != "latency":
        return s.mean(1)
    steps = s.shape[1]
    mass = s.sum(1)
    if steps == 1:
        return (mass >= 0.5).to(s.dtype)
    t = torch.arange(steps, device=s.device, dtype=s.dtype).view(1, steps, *([1] * (s.dim() - 2)))
    mean_time = (s * t).sum(1) / mass.clamp_min(1e-12)
    return torch.where(mass >= 0.5, 1.0 - mean_time / (steps - 1), torch.zeros_like(mass)).clamp(0.0, 1.0)
