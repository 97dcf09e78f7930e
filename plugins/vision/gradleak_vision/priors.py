"""Image priors of the vision optimization attacks: BatchNorm statistics, group consistency, image norm and
CPL's label regularizer. Each is a :class:`gradleak.Prior`: a penalty per restart on candidates ``(R, B, C, H, W)``.

The priors that look inside the model run it on the candidates of each restart separately (``torch.func.vmap``
over restarts), so that a train-mode model normalises every restart with that restart's own batch statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from gradleak import AttackerView, Prior

IMAGE = frozenset({"image"})
Stats = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


def batch_norm_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.modules.batchnorm._BatchNorm]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def input_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of a BatchNorm input ``(N, C, ...)`` (what train-mode BN uses)."""
    dims = [0, *range(2, x.dim())]
    return x.mean(dims), x.var(dims, unbiased=False)


class ModelProbe:
    """The attacked model as a function of candidate inputs, recording the inputs' statistics at every BN layer.

    ``run(x, fn)`` evaluates ``fn(outputs, stats)`` for each restart of ``x`` (``(R, B, ...)``) and returns the
    ``(R,)`` values; ``stats`` maps each BN layer's name to ``(mean, var)`` of its input for that restart.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        train = model.training
        self.model = copy.deepcopy(model)
        if train:
            replace_all_batch_norm_modules_(self.model)  # batch statistics, no running-buffer updates
        self.model.train(train)
        self.params = {n: p.detach() for n, p in self.model.named_parameters()}
        self.buffers = {n: b.detach() for n, b in self.model.named_buffers()}
        self.layers = [n for n, _ in batch_norm_layers(self.model)]
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, module in batch_norm_layers(self.model):
            module.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self._stats[name] = input_stats(inputs[0])
        return hook

    def run(self, x: torch.Tensor, fn: Callable[[torch.Tensor, Stats], torch.Tensor]) -> torch.Tensor:
        def one(xr: torch.Tensor) -> torch.Tensor:
            self._stats = {}
            out = functional_call(self.model, (self.params, self.buffers), (xr,))
            return fn(out, dict(self._stats))

        return vmap(one, randomness="different")(x)


class _ProbePrior(Prior):
    """A prior that evaluates the attacked model on the candidates (the probe is built on first use)."""

    def __init__(self, config=None, device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self._probe: ModelProbe | None = None
        self._model_id: int | None = None

    def probe(self, view: AttackerView) -> ModelProbe:
        if self._probe is None or self._model_id != id(view.model):
            self._probe, self._model_id = ModelProbe(view.model), id(view.model)
        return self._probe


class BNStatistics(_ProbePrior):
    """DeepInversion's feature-distribution prior: match the candidates' BatchNorm input statistics to targets.

    Yin et al., "Dreaming to Distill", CVPR 2020; used by GradInversion (Yin et al., CVPR 2021) and the
    training-mode attacks of Valadi et al. (2025):
    R_BN(x) = sum_l ||mu_l(x) - mu_l*||_2 + ||sigma_l^2(x) - sigma_l^2*||_2 over the BN layers ``l``.
    Targets are set by the attack (:meth:`set_targets`: the client's batch statistics, recovered or estimated);
    without targets the model's running statistics are used (DeepInversion's choice).
    """

    name = "bn-statistics"
    modalities = IMAGE

    def __init__(self, config=None, device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.targets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def set_targets(self, targets: Stats | None) -> BNStatistics:
        self.targets = {k: (m.detach(), v.detach()) for k, (m, v) in targets.items()} if targets is not None else None
        return self

    def _targets(self, view: AttackerView) -> Stats:
        if self.targets is not None:
            return self.targets
        return {n: (m.running_mean, m.running_var) for n, m in batch_norm_layers(view.model)
                if m.running_mean is not None}

    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor:
        targets = self._targets(view)
        if not targets:
            return inputs.new_zeros(inputs.shape[0])

        def distance(_: torch.Tensor, stats: Stats) -> torch.Tensor:
            total = inputs.new_zeros(())
            for name, (mu, var) in targets.items():
                m, v = stats[name]
                total = total + (m - mu.to(m)).norm() + (v - var.to(v)).norm()
            return total

        return self.probe(view).run(inputs, distance)


class GroupConsistency(Prior):
    """GradInversion's group consistency: pull every restart towards the consensus of all restarts.

    Yin et al., "See through Gradients: Image Batch Recovery via GradInversion", CVPR 2021:
    R_group(x_g) = ||x_g - E(x)||_2 with E the pixel-wise mean of the restarts. The paper registers the
    restarts to each other before averaging (to undo small shifts on 224 px ImageNet images); on our 32 px
    images the restarts share one frame, so E is the plain mean, recomputed (detached) at every step instead of
    every few hundred. The last consensus is kept in :attr:`consensus`: the attack's final output.
    """

    name = "group-consistency"
    modalities = IMAGE

    def __init__(self, config=None, device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.consensus: torch.Tensor | None = None

    def penalty(self, inputs: torch.Tensor, view: AttackerView | None = None) -> torch.Tensor:
        consensus = inputs.detach().mean(0)
        self.consensus = consensus
        return (inputs - consensus).flatten(2).norm(dim=2).mean(1)


class ImageNorm(Prior):
    """The L2 image prior of GradInversion (Yin et al., CVPR 2021): R_l2(x) = ||x||_2, per image, averaged."""

    name = "l2-norm"
    modalities = IMAGE

    def penalty(self, inputs: torch.Tensor, view: AttackerView | None = None) -> torch.Tensor:
        return inputs.flatten(2).norm(dim=2).mean(1)


class LabelRegularizer(_ProbePrior):
    """CPL's label-based regularizer: the candidates' predictions should be their (recovered) labels.

    Wei et al., "A Framework for Evaluating Gradient Leakage Attacks in Federated Learning", ESORICS 2020:
    R(x) = ||softmax(F(x)) - y||_2^2, summed over the batch, with ``y`` one-hot labels set by the attack
    (:meth:`set_labels`). The paper states the term "in L2 space"; breaching uses cross-entropy instead.
    """

    name = "label-regularizer"
    modalities = IMAGE

    def __init__(self, config=None, device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.labels: torch.Tensor | None = None

    def set_labels(self, labels: torch.Tensor) -> LabelRegularizer:
        self.labels = labels.detach()
        return self

    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor:
        if self.labels is None:
            raise ValueError("label-regularizer needs labels (set_labels) before use")
        labels = self.labels

        def distance(out: torch.Tensor, _: Stats) -> torch.Tensor:
            target = labels if labels.dim() == 2 else F.one_hot(labels, out.shape[-1]).to(out.dtype)
            return (out.softmax(-1) - target).pow(2).sum()

        return self.probe(view).run(inputs, distance)


#: The priors this module registers.
PRIORS = [BNStatistics, GroupConsistency, ImageNorm, LabelRegularizer]
