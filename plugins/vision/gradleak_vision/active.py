"""Active attacks: a malicious server modifies the model before it sends it (``prepare``).

``robbing-the-fed`` and ``trap-weights`` read samples off a fully connected layer they plant; ``fishing``
silences every sample but one through the classifier's last layer. All need ``--set malicious=true``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import nn

from gradleak import (Attack, AttackerView, AttackFailed, Batch, ConfigError, IncompatibleError, Reconstruction,
                      Update, param)
from gradleak.config import require_positive

from .analytic import single_sample_clusters
from .exact import images, input_layer, layer_gradients, partial_labels
from .fishing import Fishing
from .imprint import ImprintBlock, Imprinted, check_image_model, trap_weights

IMAGE = frozenset({"image"})
MALICIOUS = frozenset({"modify_model"})


@dataclass(frozen=True)
class RobbingConfig:
    bins: int = param(0, "imprint units (bins); 0: twice the batch size, the paper's recommendation")
    mu: float = param(0.41, "mean of the mean pixel value, used without surrogate data (public photo crops)")
    sigma: float = param(0.17, "its standard deviation, used without surrogate data (public photo crops)")
    gain: float = param(1e-3, "weight of the block's map back onto the pixels")
    tol: float = param(1e-5, "bins whose bias-gradient difference is below this fraction of the largest are empty")

    def validate(self, owner: str) -> None:
        if self.bins < 0:
            raise ConfigError(f"{owner}: bins must be >= 0 (0: twice the batch size), got {self.bins}")
        require_positive(self, owner, "sigma", "gain", "tol")


class RobbingTheFed(Attack):
    """Robbing the Fed: an imprint block binning samples by their mean pixel value.

    Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed: Directly Obtaining Private Data in Federated
    Learning with Modified Models", ICLR 2022. ``prepare`` puts a block in front of the model (so it works on
    any case taking image tensors: ``vision/mlp``, ``vision/lenet``, ...): k ReLU units all compute the same
    linear statistic h(x) = mean pixel, unit i with bias -c_i, where c_0 < ... < c_{k-1} are quantiles of h
    (c_i = F^{-1}(i / k), c_0 far below). Unit i fires for the samples with h > c_i, so
    (dW_i - dW_{i+1}) / (db_i - db_{i+1}) is exactly the sample whose h falls in [c_i, c_{i+1}) when it is
    alone there. F is the empirical distribution of h on the surrogate data when the threat model grants
    it, else N(mu, sigma^2) (the paper's Gaussian; defaults measured on the public photo crops). With
    k = 2n bins a sample is alone with probability (1 - 1/k)^(n-1), about 0.61. Bins holding several samples
    give mixtures; missing samples (fewer non-empty bins than samples) are reported ``failed: collision``.
    """

    name = "robbing-the-fed"
    modalities = IMAGE
    requires = MALICIOUS
    active = True
    Config = RobbingConfig
    paper = "Fowl et al., Robbing the Fed: Directly Obtaining Private Data in Federated Learning, ICLR 2022"

    def bins(self, view: AttackerView) -> int:
        return self.config.bins or 2 * view.batch_size

    def cutoffs(self, view: AttackerView, k: int) -> torch.Tensor:
        """c_0 .. c_{k-1}: the i/k quantiles of the statistic (c_0 far below every sample)."""
        levels = [i / k for i in range(1, k)]
        if view.surrogate is not None and len(view.surrogate) >= 2:
            stats = view.surrogate.data.flatten(1).mean(1).double()
            inner = torch.quantile(stats, torch.tensor(levels, dtype=torch.float64)).tolist()
        else:
            dist = NormalDist(self.config.mu, self.config.sigma)
            inner = [dist.inv_cdf(p) for p in levels]
        return torch.tensor([-1e3, *inner])

    def prepare(self, model: nn.Module, view: AttackerView) -> nn.Module:
        check_image_model(view, f"attack '{self.name}'")
        k = self.bins(view)
        size = math.prod(view.sample_shape)
        p = next(model.parameters())
        weight = torch.full((k, size), 1.0 / size, device=p.device, dtype=p.dtype)
        bias = -self.cutoffs(view, k).to(device=p.device, dtype=p.dtype)
        return Imprinted(ImprintBlock(view.sample_shape, weight, bias, self.config.gain), model)

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        dW, db = layer_gradients(update, "imprint.linear0")
        # Unit i's gradient sums over the samples above c_i; consecutive differences isolate one bin each.
        dW = dW - torch.cat([dW[1:], torch.zeros_like(dW[:1])])
        db = db - torch.cat([db[1:], torch.zeros_like(db[:1])])
        full = (db.abs() > self.config.tol * db.abs().max()).nonzero().flatten()
        n = view.batch_size
        order = full[db[full].abs().argsort(descending=True)][:n]
        x = dW[order] / db[order, None]
        failed = {i: "collision" for i in range(len(order), n)}
        if failed:
            x = torch.cat([x, torch.full((len(failed), x.shape[1]), 0.5, dtype=x.dtype, device=x.device)])
        data = images(x, view)
        labels = partial_labels(view, update, data, failed)
        return Reconstruction(Batch(data, labels, "image"), info={"bins": int(len(db)), "non_empty": int(len(full))},
                              failed=failed)


@dataclass(frozen=True)
class TrapConfig:
    rows: int = param(1000, "units of the inserted trap layer (models without a linear input layer)")
    mu: float = param(0.0, "bias of every trap unit")
    sigma: float = param(0.5, "scale of the trap weights' magnitudes")
    scale_factor: float = param(0.95, "positive weights are the negative magnitudes times this (< 1)")
    gain: float = param(1e-3, "inserted layer: weight of its map back onto the pixels")
    tol: float = param(1e-4, "relative distance under which two rows' ratios are one sample")

    def validate(self, owner: str) -> None:
        if self.rows < 1:
            raise ConfigError(f"{owner}: rows must be >= 1, got {self.rows}")
        if not 0 < self.scale_factor < 1:
            raise ConfigError(f"{owner}: scale_factor must be in (0, 1), got {self.scale_factor}")
        require_positive(self, owner, "sigma", "gain", "tol")


class TrapWeights(Attack):
    """Trap weights ("When the Curious Abandon Honesty"): a first ReLU layer whose units fire for few inputs.

    Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov, Papernot, "When the Curious Abandon Honesty:
    Federated Learning Is Not Private", IEEE EuroS&P 2023. ``prepare`` draws every row as half negative
    magnitudes |N(0, sigma^2)| and half the same magnitudes times ``scale_factor`` < 1 (so each row's
    response is mostly negative) with bias ``mu``: on ``vision/mlp`` it overwrites the first linear layer in
    place (the paper's setting); on models without one (``vision/lenet``) it inserts a layer of ``rows``
    trap units in front (as breaching does). A unit active for one sample only gives it exactly as
    dW_i / db_i; such rows repeat for one sample, so groups of identical ratios are returned, largest first
    (our readout: the paper lists every ratio), and missing samples are reported ``failed: mixed``.
    """

    name = "trap-weights"
    modalities = IMAGE
    requires = MALICIOUS
    active = True
    Config = TrapConfig
    paper = "Boenisch et al., When the Curious Abandon Honesty: Federated Learning Is Not Private, EuroS&P 2023"

    def prepare(self, model: nn.Module, view: AttackerView) -> nn.Module:
        check_image_model(view, f"attack '{self.name}'")
        c = self.config
        size = math.prod(view.sample_shape)
        p = next(model.parameters())
        try:
            layer = input_layer(model, view.sample_shape, f"attack '{self.name}'")
        except IncompatibleError:
            layer = None
        if layer is not None and isinstance(layer.after, nn.ReLU):
            with torch.no_grad():
                w = trap_weights(layer.module.out_features, size, c.sigma, c.scale_factor, view.generator)
                layer.module.weight.copy_(w)
                layer.module.bias.fill_(c.mu)
            self._layer = layer.name
            return model
        w = trap_weights(c.rows, size, c.sigma, c.scale_factor, view.generator).to(device=p.device, dtype=p.dtype)
        bias = torch.full((c.rows,), c.mu, device=p.device, dtype=p.dtype)
        self._layer = "imprint.linear0"
        # Random columns back onto the pixels: a unit's output gradient then differs from unit to unit, so units
        # firing for the same several samples give distinct mixtures, while single-sample units still agree.
        back = torch.randn((size, c.rows), generator=view.generator, device=view.generator.device)
        return Imprinted(ImprintBlock(view.sample_shape, w, bias, c.gain, back.to(device=p.device, dtype=p.dtype)),
                         model)

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        name = getattr(self, "_layer", None)
        if name is None:
            raise IncompatibleError(f"attack '{self.name}' reads the layer its prepare() planted; call prepare first")
        dW, db = layer_gradients(update, name)
        if not bool(db.abs().max() > 0):
            raise AttackFailed("dead", "no trap unit fired for any sample")
        keep = (db.abs() > 1e-6 * db.abs().max()).nonzero().flatten()
        ratios = dW[keep] / db[keep, None]
        groups = single_sample_clusters(ratios, db[keep].abs(), self.config.tol)
        n = view.batch_size
        exact = [g for g in groups if len(g) >= 2][:n]
        parts = [ratios[g].mean(0) for g in exact]
        failed = {i: "mixed" for i in range(len(parts), n)}
        parts += [torch.full_like(ratios[0], 0.5)] * len(failed)
        data = images(torch.stack(parts), view)
        labels = partial_labels(view, update, data, failed)
        return Reconstruction(Batch(data, labels, "image"), info={"layer": name, "groups": len(exact)}, failed=failed)


#: The attacks this module registers.
ATTACKS = [RobbingTheFed, TrapWeights, Fishing]
