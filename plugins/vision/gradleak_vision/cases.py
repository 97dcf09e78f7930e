"""Vision cases: what a server attacks when clients train an image classifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gradleak import Batch, Case, CaseConfig

from .data import NUM_CLASSES, load_image_data, photo_crops, public_photo_crops
from .models import LeNet


@dataclass(frozen=True)
class LeNetConfig(CaseConfig):
    """The protocol and threat-model knobs of :class:`gradleak.CaseConfig`; LeNet adds none."""


class LeNetCase(Case):
    """DLG's sigmoid LeNet (uniform(-0.5, 0.5) init) on 32x32 RGB photo crops, cross-entropy loss.

    Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019 (the model and initialisation of its code).
    Built-in data: 8 crops of each of 20 real photos bundled with scikit-image and scikit-learn, one class per
    photo (``gradleak_vision.data``); ``--data`` takes a folder of PNG/JPEG (one subfolder per class) or an
    ``.npy``, fitted to 3x32x32. Public data: other crops of the same photos sharing no pixel with the private
    ones.
    """

    name = "lenet"
    modality = "image"
    num_classes = NUM_CLASSES
    default_batch_size = 1
    Config = LeNetConfig
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019"

    #: The shape of one sample, (C, H, W).
    sample_shape = (3, 32, 32)

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        return LeNet(self.num_classes, generator=generator, device=self.device)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy; ``labels`` are class ids ``(N,)`` or class probabilities ``(N, K)``."""
        if labels is None:
            raise ValueError("the lenet case needs labels to compute its loss")
        return F.cross_entropy(outputs, labels)

    def load_data(self, path: Path | None) -> Batch:
        if path is None:
            return photo_crops()
        return load_image_data(path, self.sample_shape, num_classes=self.num_classes)

    def public_data(self) -> Batch | None:
        return public_photo_crops()

#: The cases this module registers.
CASES = [LeNetCase]
