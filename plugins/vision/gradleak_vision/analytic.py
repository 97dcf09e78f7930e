"""Analytic (closed-form, exact) attacks on images: ``analytic-fc``, ``rgap`` and ``spear``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradleak import Attack, AttackerView, AttackFailed, Batch, ConfigError, Reconstruction, Update, param

from .exact import images, input_layer, labels_from_inputs, layer_gradients
from .rgap import RGAP
from .spear import Spear

IMAGE = frozenset({"image"})


@dataclass(frozen=True)
class AnalyticFCConfig:
    min_bias: float = param(1e-6, "rows whose |dL/db_i| is below this fraction of the largest are ignored")
    tol: float = param(1e-4, "batches: relative distance under which two rows' ratios are one sample")

    def validate(self, owner: str) -> None:
        if not 0 < self.min_bias < 1:
            raise ConfigError(f"{owner}: min_bias must be in (0, 1), got {self.min_bias}")
        if self.tol <= 0:
            raise ConfigError(f"{owner}: tol must be > 0, got {self.tol}")


def row_ratios(dW: torch.Tensor, db: torch.Tensor, min_bias: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``dL/dW_i / dL/db_i`` for every row with a bias gradient above ``min_bias`` times the largest; returns
    the ratios and the rows' indices."""
    keep = db.abs() > min_bias * db.abs().max()
    rows = keep.nonzero().flatten()
    return dW[rows] / db[rows, None], rows


def single_sample_clusters(ratios: torch.Tensor, weights: torch.Tensor, tol: float) -> list[torch.Tensor]:
    """Groups of rows whose ratios coincide (relative distance < ``tol``), largest group first.

    A row of a ReLU layer active for one sample only has ratio exactly that sample; rows active for several
    samples give weighted mixtures, which almost never coincide, so a group of two or more rows is a sample.
    """
    scale = ratios.norm(dim=1).clamp_min(1e-30)
    dist = torch.cdist(ratios, ratios) / torch.minimum(scale[:, None], scale[None, :])
    free = torch.ones(len(ratios), dtype=torch.bool, device=ratios.device)
    groups = []
    for i in weights.argsort(descending=True).tolist():
        if not free[i]:
            continue
        members = ((dist[i] < tol) & free).nonzero().flatten()
        free[members] = False
        groups.append(members)
    groups.sort(key=len, reverse=True)
    return groups


class AnalyticFC(Attack):
    """Analytic input recovery from a linear layer on the pixels: x = (dL/dW_i) / (dL/db_i).

    Phong, Aono, Hayashi, Wang, Moriai, "Privacy-Preserving Deep Learning via Additively Homomorphic
    Encryption", IEEE TIFS 2018 (Sec. 3); Geiping et al., "Inverting Gradients", NeurIPS 2020 (Prop. 3.1).
    For one sample, dL/dW_i = (dL/dz_i) x and dL/db_i = dL/dz_i, so every row with dL/db_i != 0 gives x; we
    take the least-squares combination over rows, x = sum_i db_i dW_i / sum_i db_i^2 (exact for batch 1).
    Batches (beyond the paper): a row of a ReLU layer active for a single sample still gives that sample
    exactly; rows whose ratios coincide are grouped (see :func:`single_sample_clusters`) and the largest groups
    returned; a sample without such a group is reported ``failed: mixed``. Needs a linear layer with bias on
    the flattened image (``vision/mlp``); labels come from the last layer (exact once the inputs are known).
    """

    name = "analytic-fc"
    modalities = IMAGE
    Config = AnalyticFCConfig
    paper = "Phong et al., Privacy-Preserving Deep Learning via Additively Homomorphic Encryption, TIFS 2018"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        layer = input_layer(view.model, view.sample_shape, f"attack '{self.name}'")
        dW, db = layer_gradients(update, layer.name)
        if not bool(db.abs().max() > 0):
            raise AttackFailed("zero", f"the gradient of layer '{layer.name}' is zero; no sample reached it")
        c = self.config
        n = view.batch_size
        failed: dict[int, str] = {}
        if n == 1:
            keep = db.abs() > c.min_bias * db.abs().max()
            x = (db[keep] @ dW[keep] / db[keep].pow(2).sum())[None]
            groups = 1
        else:
            ratios, rows = row_ratios(dW, db, c.min_bias)
            clusters = single_sample_clusters(ratios, db[rows].abs(), c.tol)
            exact = [g for g in clusters if len(g) >= 2][:n]
            groups = len(exact)
            parts = [ratios[g].mean(0) for g in exact]
            while len(parts) < n:
                failed[len(parts)] = "mixed"
                parts.append(torch.full_like(ratios[0], 0.5))
            x = torch.stack(parts)
        data = images(x, view)
        labels = labels_from_inputs(view, update, data)
        return Reconstruction(Batch(data, labels, "image"), info={"layer": layer.name, "exact_groups": groups},
                              failed=failed)


#: The attacks this module registers.
ATTACKS = [AnalyticFC, RGAP, Spear]
