"""Generic priors on grid-shaped inputs."""

from __future__ import annotations

import torch

from ..components import Prior
from ..view import AttackerView


class TotalVariation(Prior):
    """Anisotropic total variation over the last two (spatial) dimensions, averaged per restart.

    Rudin, Osher, Fatemi 1992; as used by Geiping et al. 2020:
    TV(x) = mean |x[..., :, 1:] - x[..., :, :-1]| + mean |x[..., 1:, :] - x[..., :-1, :]|.
    """

    name = "total-variation"
    modalities = frozenset({"image", "spikes"})

    def penalty(self, inputs: torch.Tensor, view: AttackerView | None = None) -> torch.Tensor:
        flat = inputs.reshape(inputs.shape[0], -1, *inputs.shape[-2:])
        dx = (flat[..., :, 1:] - flat[..., :, :-1]).abs().flatten(1).mean(1)
        dy = (flat[..., 1:, :] - flat[..., :-1, :]).abs().flatten(1).mean(1)
        return dx + dy
