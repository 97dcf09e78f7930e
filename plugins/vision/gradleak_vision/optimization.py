"""Passive optimization attacks on images beyond the core's generic ones, all on the core engine
(:func:`gradleak.engine.invert`): GradInversion (``see-through-gradients``), CPL (``cpl``) and the two
training-mode attacks of Valadi et al. (``gia-running``, ``gia-estimate``)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

import torch

from gradleak import Attack, AttackerView, Reconstruction, Update
from gradleak.builtin.attacks import known_or_recovered_labels
from gradleak.builtin.priors import TotalVariation
from gradleak.config import param, require_positive
from gradleak.engine import InversionSettings, count_labels, invert, last_layer

from . import bnstats
from .modality import Image, ImageSpace
from .priors import PRIORS, BNStatistics, GroupConsistency, ImageNorm, LabelRegularizer

log = logging.getLogger(__name__)
IMAGE = frozenset({"image"})

__all__ = ["ATTACKS", "PRIORS", "yin_labels"]


def yin_labels(view: AttackerView, update: Update) -> torch.Tensor:
    """GradInversion's label restoration (Yin et al. 2021), for batches without repeated labels.

    With non-negative penultimate features, the row ``k`` of the last layer's weight gradient has negative
    entries only when class ``k`` is in the batch; the ``B`` classes whose rows have the most negative minimum
    are the labels. Batches larger than the number of classes must repeat labels: there we fall back on the
    count method of Wainakh et al. (``gradleak.engine.count_labels``).
    """
    W, _ = last_layer(view, update)
    if view.batch_size > W.shape[0]:
        return count_labels(view, update)
    return W.min(dim=1).values.argsort()[:view.batch_size].sort().values


# ------------------------------------------------------------------------------------------ see-through-gradients


@dataclass(frozen=True)
class SeeThroughConfig:
    iterations: int = param(8000, "Adam iterations (LeakPro's preset; the paper runs 20k on ImageNet)")
    lr: float = param(0.1, "Adam step size (cosine decay)")
    restarts: int = param(4, "the group: restarts optimised together, pulled towards their consensus")
    tv: float = param(1e-4, "total-variation weight (alpha_tv)")
    l2: float = param(1e-6, "image L2-norm weight (alpha_l2)")
    bn: float = param(1e-2, "BatchNorm-statistics weight (alpha_BN)")
    group: float = param(1e-2, "group-consistency weight (alpha_group)")
    output: Literal["consensus", "best"] = param("consensus", "return the group's mean or its best restart")
    init_mean: float = param(0.5, "mean of the Gaussian start (data space)")
    init_std: float = param(0.25, "std of the Gaussian start (data space)")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "restarts", "tv", "l2", "bn", "group",
                         allow_zero=("tv", "l2", "bn", "group"))


class SeeThroughGradients(Attack):
    """GradInversion: L2 gradient matching + BN-statistics, TV, L2 and group-consistency priors, Yin labels.

    Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov, "See through Gradients: Image Batch Recovery via
    GradInversion", CVPR 2021. min_x ||grad(x, y) - g||^2 + a_BN R_BN + a_tv TV + a_l2 ||x||_2 + a_g R_group,
    a group of ``restarts`` seeds optimised jointly with Adam (cosine decay), the output their consensus.
    Labels: known when granted, else Yin et al.'s restoration from the last layer. The BN targets are the
    client's batch statistics when the threat model grants ``bn_stats`` (the paper's setting), else the
    model's running statistics (breaching's and LeakPro's). Weights are LeakPro's preset of the paper. The
    paper's Langevin noise on the updates is left out (the engine has no noise hook).
    """

    name = "see-through-gradients"
    modalities = IMAGE
    priors = (BNStatistics, GroupConsistency, ImageNorm, TotalVariation)
    Config = SeeThroughConfig
    paper = "Yin et al., See through Gradients: Image Batch Recovery via GradInversion, CVPR 2021"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        labels = view.labels if view.labels is not None else yin_labels(view, update)
        bn = BNStatistics(device=self.device).set_targets(view.bn_stats)
        group = GroupConsistency(device=self.device)
        settings = InversionSettings.from_config(c, budget, objective="l2", optimizer="adam", schedule="cosine",
                                                 boxed=True)
        priors = [(bn, c.bn), (TotalVariation(device=self.device), c.tv), (ImageNorm(device=self.device), c.l2),
                  (group, c.group if c.restarts > 1 else 0.0)]
        result = invert(view, update, settings, labels=labels, priors=priors)
        if c.output == "best" or group.consensus is None:
            return result
        batch = result.batch.replace(data=group.consensus.clamp(0, 1).detach())
        return dataclasses.replace(result, batch=batch, info={**result.info, "output": "consensus"})


# ------------------------------------------------------------------------------------------ cpl


class PatternedSpace(ImageSpace):
    """Pixel space starting from a tiled random pattern: a ``pattern x pattern`` U(0, 1) seed per image, tiled
    over the image (Wei et al.'s "patterned random" initialisation; breaching's ``patterned-N``)."""

    def __init__(self, sample_shape: tuple[int, ...], pattern: int, boxed: bool = True) -> None:
        super().__init__(sample_shape, boxed)
        self.pattern = pattern

    def init(self, restarts: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        c, h, w = self.sample_shape
        p = min(self.pattern, h, w)
        seed = torch.rand((restarts, batch_size, c, p, p), generator=generator, device=generator.device)
        tiled = seed.repeat(1, 1, 1, -(-h // p), -(-w // p))
        return tiled[..., :h, :w].contiguous()


class _PatternedImage(Image):
    def __init__(self, pattern: int, device: torch.device | str = "cpu") -> None:
        super().__init__(device=device)
        self.pattern = pattern

    def search_space(self, view: AttackerView, boxed: bool = True) -> ImageSpace:
        return PatternedSpace(view.sample_shape, self.pattern, boxed=boxed)


@dataclass(frozen=True)
class CPLConfig:
    iterations: int = param(300, "L-BFGS steps")
    lr: float = param(1.0, "L-BFGS step size")
    label_weight: float = param(1.0, "weight of the label-based regularizer (alpha)")
    pattern: int = param(16, "side of the tiled random seed in pixels (breaching's patterned-16)")
    restarts: int = param(1, "random restarts optimised together")
    lbfgs_inner: int = param(20, "inner L-BFGS iterations per step")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "label_weight", "pattern", "restarts", "lbfgs_inner",
                         allow_zero=("label_weight",))


class CPL(Attack):
    """CPL: L2 gradient matching with a label-based regularizer from a patterned start, L-BFGS, boxed.

    Wei, Liu, Loper, Chow, Gursoy, Truex, Wu, "A Framework for Evaluating Gradient Leakage Attacks in
    Federated Learning", ESORICS 2020. The label is recovered first (iDLG; Wainakh et al.'s counts for
    batches), then min_x ||grad(x, y) - g||^2 + alpha ||softmax(F(x)) - y||^2 from a tiled random seed,
    optimised with L-BFGS (step 1, 300 iterations) and clamped to the data range (breaching's ``wei.yaml``).
    """

    name = "cpl"
    modalities = IMAGE
    priors = (LabelRegularizer,)
    Config = CPLConfig
    paper = "Wei et al., A Framework for Evaluating Gradient Leakage Attacks in Federated Learning, ESORICS 2020"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        labels = known_or_recovered_labels(view, update)
        settings = InversionSettings.from_config(c, budget, objective="l2", optimizer="lbfgs", boxed=True)
        patterned = dataclasses.replace(view, modality=_PatternedImage(c.pattern, device=self.device))
        regularizer = LabelRegularizer(device=self.device).set_labels(labels)
        return invert(patterned, update, settings, labels=labels, priors=[(regularizer, c.label_weight)])


# ------------------------------------------------------------------------------------------ gia-running / gia-estimate


@dataclass(frozen=True)
class GIAConfig:
    iterations: int = param(10000, "signed-Adam iterations (LeakPro's default)")
    lr: float = param(0.1, "Adam step size (x0.1 at 3/8, 5/8, 7/8 of the run)")
    tv: float = param(0.052, "total-variation weight (LeakPro's default)")
    bn: float = param(0.00016, "weight of the BN-statistics prior (LeakPro's default)")
    restarts: int = param(1, "random restarts optimised together")
    init_mean: float = param(0.5, "mean of the Gaussian start (data space)")
    init_std: float = param(0.25, "std of the Gaussian start (data space)")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "restarts", "tv", "bn", allow_zero=("tv", "bn"))


class _GIA(Attack):
    modalities = IMAGE
    priors = (BNStatistics, TotalVariation)
    Config = GIAConfig
    paper = "Valadi et al., From Research to Reality: Feasibility of Gradient Inversion Attacks in FL, 2025"

    def targets(self, view: AttackerView, update: Update) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        bn = BNStatistics(device=self.device).set_targets(self.targets(view, update))
        labels = known_or_recovered_labels(view, update)
        settings = InversionSettings.from_config(c, budget, objective="cosine", optimizer="adam", schedule="step",
                                                 signed=True, boxed=True)
        return invert(view, update, settings, labels=labels,
                      priors=[(bn, c.bn), (TotalVariation(device=self.device), c.tv)])


class GIARunning(_GIA):
    """Training-mode inversion with the client's BN batch statistics recovered from its running buffers.

    Valadi, Akesson, Ostman, Hoseini, Toor, Hellander, "From Research to Reality: Feasibility of Gradient
    Inversion Attacks in Federated Learning", 2025 (LeakPro ``gia_running``). The server inverts
    ``r' = (1 - m) r + m s`` for the batch statistics ``s`` (``gradleak_vision.bnstats.from_running``) and adds
    R_BN towards them to Inverting Gradients' objective (cosine matching, TV, signed Adam, boxed). Needs a
    train-mode client whose update carries the buffers (``--set mode=train``).
    """

    name = "gia-running"

    def targets(self, view: AttackerView, update: Update) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return bnstats.from_running(view, update)


class GIAEstimate(_GIA):
    """Training-mode inversion with the client's BN batch statistics estimated from public proxy data.

    Valadi et al. 2025 (LeakPro ``gia_estimate``): proxy batches of the client's size run through the model in
    train mode; the mean of their BN input statistics is R_BN's target (``gradleak_vision.bnstats.from_proxy``).
    Needs the ``surrogate`` capability (``--set surrogate=known``).
    """

    name = "gia-estimate"
    requires = frozenset({"surrogate"})

    def targets(self, view: AttackerView, update: Update) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if view.surrogate is None:
            from gradleak import CapabilityError

            raise CapabilityError("gia-estimate needs public proxy data; grant it with --set surrogate=known")
        return bnstats.from_proxy(view, view.surrogate)


#: The attacks this module registers.
ATTACKS = [SeeThroughGradients, CPL, GIARunning, GIAEstimate]
