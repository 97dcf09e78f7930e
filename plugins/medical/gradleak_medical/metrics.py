"""Medical privacy metrics."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from gradleak import Batch, Metric

from .patches import class_names, medical_patches, public_medical_patches


def features(images: torch.Tensor) -> np.ndarray:
    """What the attacker's classifier looks at: the image pooled to 8x8 per channel, channel means and standard
    deviations, and the mean absolute horizontal and vertical differences (texture)."""
    x = images.detach().float().cpu().clamp(0, 1)
    pooled = F.adaptive_avg_pool2d(x, 8).flatten(1)
    stats = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
    texture = torch.stack([(x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3)),
                           (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))], 1)
    return torch.cat([pooled, stats, texture], 1).numpy()


@functools.lru_cache(maxsize=1)
def attacker_classifier() -> tuple[object, float]:
    """A random forest fitted on the clean *public* patches (and their mirror images); returns it and its accuracy
    on the private patches, which it never saw (the ceiling of ``attacker_acc``: 0.88 here).

    A forest on pooled pixels and texture statistics rather than a CNN: it fits in about a second, so every run
    of a study (each in its own process) can afford it (a small CNN took minutes on 2 cores and did no better).
    """
    from sklearn.ensemble import RandomForestClassifier

    public = public_medical_patches()
    x = torch.cat([public.data, public.data.flip(-1)])
    y = torch.cat([public.labels, public.labels]).numpy()
    model = RandomForestClassifier(n_estimators=300, random_state=0, n_jobs=1)
    model.fit(features(x), y)
    private = medical_patches()
    acc = float((model.predict(features(private.data)) == private.labels.numpy()).mean())
    return model, acc


class AttackerAccuracy(Metric):
    """1 where a classifier trained on clean public patches gives the reconstruction its true class, else 0.

    Jiang et al.'s "attacker accuracy": can the attacker tell what the reconstructed image shows? Lower is
    more private. The classifier (:func:`attacker_classifier`, fitted once per process on the public patches) knows the
    classes of the built-in patch cases; its accuracy on clean private patches is the metric's ceiling.
    """

    name = "attacker_acc"
    modalities = frozenset({"image"})
    paper = ("Jiang, Firouzi, Chakrabarty: Defending Against Gradient Inversion Attacks for Biomedical Images "
             "via Learnable Data Perturbation")

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        model, _ = attacker_classifier()
        pred = torch.from_numpy(model.predict(features(recon.data)))
        return (pred == truth.labels.cpu()).float()


METRICS = [AttackerAccuracy]
