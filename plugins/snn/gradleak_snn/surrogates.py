"""Surrogate spike functions: a Heaviside step forward, a smooth derivative backward.

snntorch's own surrogates (``snntorch.surrogate.fast_sigmoid`` ...) are old-style ``autograd.Function``s, which
``torch.func`` (``vmap``, ``grad``: the engine's batched restarts and double backward) refuses. We build the
same surrogates from plain differentiable ops with the straight-through identity

    S(U) = H(U) + s(U) - stop_gradient(s(U)),

so that the value is exactly snntorch's ``(U > 0)`` and ``dS/dU = s'(U)``, with ``s`` the primitive of
snntorch's backward formula. Being ordinary autograd, the result is twice differentiable and vmap friendly
(an attack differentiates the parameter gradient once more, through ``s''``).

- ``fast-sigmoid`` (Zenke and Ganguli, SuperSpike, 2018; snntorch's default slope k = 25):
  ``s(U) = U / (1 + k|U|)``, ``s'(U) = 1 / (1 + k|U|)^2``.
- ``atan`` (Fang et al., ICCV 2021; snntorch's alpha = 2): ``s(U) = atan(pi alpha U / 2) / pi``,
  ``s'(U) = (alpha / 2) / (1 + (pi alpha U / 2)^2)``.
- ``straight-through`` (Bengio et al. 2013; snntorch's ``straight_through_estimator``): ``s(U) = U``,
  ``s'(U) = 1``; its second derivative is 0.

snntorch's ``sigmoid`` surrogate is left out on purpose: its backward overflows in float32 once the membrane
falls below about -3.5 and returns NaN (see DATA.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gradleak import ConfigError

SpikeFn = Callable[[torch.Tensor], torch.Tensor]

#: snntorch's default fast-sigmoid slope.
FAST_SIGMOID_SLOPE = 25.0
#: snntorch's default arctan alpha.
ATAN_ALPHA = 2.0


def _straight_through(step: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    return step + (smooth - smooth.detach())


def fast_sigmoid(slope: float = FAST_SIGMOID_SLOPE) -> SpikeFn:
    """Heaviside forward, ``1 / (1 + slope |U|)^2`` backward."""

    def spike(u: torch.Tensor) -> torch.Tensor:
        return _straight_through((u > 0).to(u.dtype), u / (1.0 + slope * u.abs()))

    return spike


def atan(alpha: float = ATAN_ALPHA) -> SpikeFn:
    """Heaviside forward, ``(alpha / 2) / (1 + (pi alpha U / 2)^2)`` backward."""

    def spike(u: torch.Tensor) -> torch.Tensor:
        return _straight_through((u > 0).to(u.dtype), torch.atan(math.pi * alpha / 2.0 * u) / math.pi)

    return spike


def straight_through() -> SpikeFn:
    """Heaviside forward, identity backward."""

    def spike(u: torch.Tensor) -> torch.Tensor:
        return _straight_through((u > 0).to(u.dtype), u)

    return spike


#: The surrogate names ``--set surrogate=...`` accepts.
SURROGATES: dict[str, Callable[[], SpikeFn]] = {
    "fast-sigmoid": fast_sigmoid,
    "atan": atan,
    "straight-through": straight_through,
}


def surrogate(name: str) -> SpikeFn:
    """The spike function of surrogate ``name``; an unknown name raises a ConfigError listing the valid ones."""
    try:
        return SURROGATES[name]()
    except KeyError:
        raise ConfigError(f"unknown surrogate {name!r}; choose one of {', '.join(SURROGATES)} "
                          f"(--set surrogate=NAME)") from None
