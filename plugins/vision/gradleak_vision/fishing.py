"""Fishing for user data: the last layer silences every sample's gradient but the one the server fishes for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from gradleak import (Attack, AttackerView, AttackFailed, Batch, CapabilityError, ConfigError, IncompatibleError,
                      Reconstruction, Update, param)
from gradleak.config import require_positive

from .exact import images, input_layer, layer_gradients, leaves


@dataclass(frozen=True)
class FishingConfig:
    fish: Literal["class", "feature"] = param("class", "fish one class, or the samples above a feature threshold")
    target_class: int = param(0, "the class fished for (class mode)")
    bias: float = param(1000.0, "class mode: logit bias of every other class")
    multiplier: float = param(1000.0, "feature mode: gain of the fished feature")
    iterations: int = param(2000, "models without a linear input layer: inverting-gradients iterations")
    tv: float = param(0.03, "models without a linear input layer: total-variation weight")

    def validate(self, owner: str) -> None:
        if self.target_class < 0:
            raise ConfigError(f"{owner}: target_class must be >= 0, got {self.target_class}")
        require_positive(self, owner, "bias", "multiplier", "iterations")


def classifier_layer(model: nn.Module, num_classes: int | None, who: str) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in leaves(model) if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].bias is None or (num_classes and linears[-1][1].out_features != num_classes):
        raise IncompatibleError(f"{who} rewrites the classifier's last layer: it needs a final nn.Linear with a bias "
                                "onto the classes")
    return linears[-1]


class Fishing(Attack):
    """Fishing for user data: class and feature fishing through the last layer (Wen et al. 2022).

    Wen, Geiping, Fowl, Goldblum, Goldstein, "Fishing for User Data in Large-Batch Federated Learning via
    Gradient Magnification", ICML 2022. Class fishing (breaching's ``cls_attack``): the target row of the
    last layer becomes the constant 0.5, every other row zero with bias 1000, so p_target is 0 in float
    arithmetic and dL/dh = W^T (p - y) vanishes for every sample except those of the target class, whose
    gradient the update then carries alone (divided by the batch size). Feature fishing (``feature_attack``,
    needs the surrogate data): the target row picks the penultimate feature f of largest spread on public
    data, scaled by ``multiplier``, with bias -multiplier * v, v its (1 - 1/n) quantile there; the other
    logits are 0, so only samples with h_f > v (of other classes) keep a gradient. The fished sample is read
    off the first layer exactly (dW_i / db_i, ``vision/mlp``) or recovered by inverting gradients at batch 1
    (cosine matching is blind to the 1/n scale; ``vision/lenet``). The other n - 1 samples are reported
    ``failed: not-fished``. Its label: the target class (class mode), else the class with the most negative
    bias gradient (a guess).
    """

    name = "fishing"
    modalities = frozenset({"image"})
    requires = frozenset({"modify_model"})
    active = True
    Config = FishingConfig
    paper = "Wen et al., Fishing for User Data in Large-Batch Federated Learning via Gradient Magnification, ICML 2022"

    def prepare(self, model: nn.Module, view: AttackerView) -> nn.Module:
        c = self.config
        name, last = classifier_layer(model, view.num_classes, f"attack '{self.name}'")
        t = c.target_class
        if t >= last.out_features:
            raise ConfigError(f"attack '{self.name}': target_class={t} is not a class of this case "
                              f"(0 to {last.out_features - 1}); choose one with --set target_class=N")
        with torch.no_grad():
            if c.fish == "class":
                last.weight.zero_()
                last.weight[t] = 0.5
                keep = float(last.bias[t])
                last.bias.fill_(c.bias)
                last.bias[t] = keep
            else:
                f, v = self._feature(model, last, view)
                last.weight.zero_()
                last.weight[t, f] = c.multiplier
                last.bias.zero_()
                last.bias[t] = -c.multiplier * v
        return model

    def _feature(self, model: nn.Module, last: nn.Linear, view: AttackerView) -> tuple[int, float]:
        if view.surrogate is None:
            raise CapabilityError(f"attack '{self.name}' with fish=feature estimates the feature's distribution on "
                                  "public data: it needs the capability 'surrogate'; grant it with --set surrogate=known")
        feats: list[torch.Tensor] = []
        handle = last.register_forward_hook(lambda mod, args, out: feats.append(args[0].detach()))
        try:
            with torch.no_grad():
                view.forward(model, view.surrogate.data.to(view.device))
        finally:
            handle.remove()
        h = feats[0].double()
        f = int(h.std(0).argmax())
        v = float(torch.quantile(h[:, f], 1.0 - 1.0 / max(view.batch_size, 2)))
        return f, v

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        n = view.batch_size
        name, _ = classifier_layer(view.model, view.num_classes, f"attack '{self.name}'")
        _, db_last = layer_gradients(update, name)
        if c.fish == "class":
            label = c.target_class
        else:
            others = db_last.clone()
            others[c.target_class] = float("inf")
            label = int(others.argmin())
        try:
            layer = input_layer(view.model, view.sample_shape, f"attack '{self.name}'")
        except IncompatibleError:
            layer = None
        if layer is not None:
            dW, db = layer_gradients(update, layer.name)
            if not bool(db.abs().max() > 0):
                raise AttackFailed("absent", "no sample of the batch was fished (no gradient reaches the body)")
            keep = db.abs() > 1e-6 * db.abs().max()
            x = (db[keep] @ dW[keep] / db[keep].pow(2).sum())[None]
            fished = images(x, view)
            how = "analytic"
        else:
            fished = self._invert(update, view, label, budget)
            how = "inverting-gradients"
        data = torch.cat([fished, fished.new_full((n - 1, *fished.shape[1:]), 0.5)])
        labels = torch.full((n,), label, dtype=torch.long, device=data.device)
        failed = {i: "not-fished" for i in range(1, n)}
        return Reconstruction(Batch(data, labels, "image"), info={"readout": how, "label": label}, failed=failed)

    def _invert(self, update: Update, view: AttackerView, label: int, budget: int | None) -> torch.Tensor:
        import copy

        from gradleak.builtin.priors import TotalVariation
        from gradleak.engine import InversionSettings, invert

        c = self.config
        model = copy.deepcopy(view.model)
        name, last = classifier_layer(model, view.num_classes, f"attack '{self.name}'")
        # The last layer's gradient still mixes every sample (p - y of the silenced ones): match the body only.
        last.requires_grad_(False)
        body = [k for k, p in model.named_parameters() if p.requires_grad]
        if all(float(update.tensors[k].abs().max()) == 0 for k in body):
            raise AttackFailed("absent", "no sample of the batch was fished (no gradient reaches the body)")
        one = dataclasses.replace(view, model=model, batch_size=1, labels=torch.tensor([label], device=view.device))
        settings = InversionSettings(objective="cosine", optimizer="adam", lr=0.1, iterations=budget or c.iterations,
                                     schedule="step", signed=True, boxed=True, restarts=1, init_mean=0.5,
                                     init_std=0.25)
        rec = invert(one, update, settings, labels=one.labels, priors=[(TotalVariation(device=self.device), c.tv)])
        return rec.batch.data
