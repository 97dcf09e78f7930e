"""Hook implementations of gradleak-example-zero.

gradleak finds this module through the entry point in pyproject.toml::

    [project.entry-points.gradleak]
    example = "gradleak_example.plugin"

and calls the hooks below the first time something asks for a component.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import gradleak
from gradleak.engine import count_labels, idlg_label


@dataclass(frozen=True)
class MeanImageConfig:
    value: float = gradleak.param(0.5, "the constant every pixel takes when no public data is granted")
    use_surrogate: bool = gradleak.param(True, "guess the mean public image when the threat model grants it")


class MeanImage(gradleak.Attack):
    """Mean-image baseline: guess the same image for every sample, whatever the update says.

    A floor for gradient inversion results, not an attack from a paper: each sample is guessed as the
    pixel-wise mean of the public (surrogate) images when the threat model grants them, else as a constant
    image (0.5 everywhere). Labels come from the last layer: iDLG (Zhao et al. 2020) for one sample, the
    count method of Wainakh et al. 2022 for a batch; the true labels when the threat model grants them.
    """

    name = "mean-image"
    modalities = frozenset({"image"})
    Config = MeanImageConfig
    paper = "baseline (no paper)"

    def reconstruct(self, update, view, budget=None):
        guess = self._guess(view)
        images = guess.expand(view.batch_size, *view.sample_shape).clone()
        if view.labels is not None:
            labels = view.labels
        elif view.batch_size == 1:
            labels = idlg_label(view, update)
        else:
            labels = count_labels(view, update)
        batch = gradleak.Batch(data=images, labels=labels, modality=view.modality.name)
        return gradleak.Reconstruction(batch, info={"guess": "surrogate mean" if guess.dim() else "constant"})

    def _guess(self, view) -> torch.Tensor:
        public = view.surrogate
        if self.config.use_surrogate and public is not None and isinstance(public.data, torch.Tensor):
            if tuple(public.data.shape[1:]) == tuple(view.sample_shape) and len(public) > 0:
                return public.data.to(view.device, torch.float32).mean(dim=0)
        return torch.tensor(self.config.value, device=view.device)


@gradleak.hookimpl
def register_attacks(register):
    register(MeanImage)
