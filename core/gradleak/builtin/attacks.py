"""Generic optimization attacks: they need only a modality with a continuous search space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..components import Attack
from ..config import param, require_positive
from ..engine import InversionSettings, count_labels, idlg_label, invert
from ..types import Reconstruction, Update
from ..view import AttackerView
from .priors import TotalVariation

CONTINUOUS = frozenset({"image", "spikes"})


def known_or_recovered_labels(view: AttackerView, update: Update) -> torch.Tensor:
    """The true labels when the threat model grants them, else recovered from the last layer
    (iDLG for one sample, the bias-corrected count method of Wainakh et al. for a batch)."""
    if view.labels is not None:
        return view.labels
    if view.batch_size == 1:
        return idlg_label(view, update)
    return count_labels(view, update)


@dataclass(frozen=True)
class DLGConfig:
    iterations: int = param(300, "L-BFGS steps (each up to `lbfgs_inner` inner iterations)")
    lr: float = param(1.0, "L-BFGS step size")
    restarts: int = param(8, "random restarts optimised together; the best final objective wins")
    lbfgs_inner: int = param(20, "inner L-BFGS iterations per step (torch's max_iter)")
    boxed: bool = param(False, "clamp candidates to the data range after each step (DLG: no)")
    line_search: bool = param(True, "Armijo backtracking per restart (DLG: no; false gives the paper's fixed step)")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "restarts", "lbfgs_inner")


class DLG(Attack):
    """Deep Leakage from Gradients: joint data + label L2 gradient matching with L-BFGS.

    Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019.
    min_{x', y'} || dL(F(x'), softmax(y'))/dtheta - g ||^2, optimised with L-BFGS (lr 1, 300 steps) from a
    Gaussian start. We run ``restarts`` starts at once and keep the lowest objective, since plain L-BFGS DLG
    diverges on some images (the paper reports single runs); ``--set restarts=1`` is the paper's setting.
    """

    name = "dlg"
    modalities = CONTINUOUS
    Config = DLGConfig
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019"

    def settings(self, budget: int | None) -> InversionSettings:
        return InversionSettings.from_config(self.config, budget, objective="l2", optimizer="lbfgs")

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        return invert(view, update, self.settings(budget), labels=view.labels)


class IDLG(DLG):
    """Improved DLG: read the label off the last layer's gradient sign, then DLG with that label fixed.

    Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", arXiv:2001.02610, 2020.
    For one sample the label is the row of the last weight gradient with a negative sum. For batches (beyond
    the paper) labels come from the bias-corrected count method of Wainakh et al. 2022.
    """

    name = "idlg"
    paper = "Zhao et al., iDLG: Improved Deep Leakage from Gradients, arXiv 2020"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        labels = known_or_recovered_labels(view, update)
        return invert(view, update, self.settings(budget), labels=labels)


@dataclass(frozen=True)
class InvertingGradientsConfig:
    iterations: int = param(24000, "Adam iterations (the paper's budget; inversefed's quick default is 4800)")
    lr: float = param(0.1, "Adam step size")
    tv: float = param(0.03, "total-variation weight")
    restarts: int = param(1, "random restarts optimised together")
    signed: bool = param(True, "use the sign of the gradient (signed Adam)")
    boxed: bool = param(True, "clamp candidates to the data range")
    schedule: Literal["none", "step", "cosine"] = param("step", "step: x0.1 at 3/8, 5/8, 7/8 of the run")
    init_mean: float = param(0.5, "mean of the Gaussian start (data space)")
    init_std: float = param(0.25, "std of the Gaussian start (data space)")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "restarts", "tv", allow_zero=("tv",))


class InvertingGradients(Attack):
    """Inverting Gradients: cosine gradient matching + total variation, signed Adam, boxed, step decay.

    Geiping, Bauermeister, Droege, Moeller, "Inverting Gradients - How easy is it to break privacy in
    federated learning?", NeurIPS 2020.
    min_x 1 - <grad(x), g> / (||grad(x)|| ||g||) + tv * TV(x), x in [0, 1]. Labels are known when the threat
    model grants them, else recovered from the last layer (iDLG / Wainakh et al.). The paper's TV weight
    depends on the data set (1e-1 ImageNet, 1e-4 to 1e-6 CIFAR notebooks); we chose 0.03 among 0.0001, 0.01,
    0.02, 0.03 and 0.05 on 32x32 photos with LeNet (0.01 gives about 1 dB less there). 24,000 iterations is
    the paper's budget; 4,800 (inversefed's quick default) loses 1-1.5 dB on LeNet. inversefed starts from
    ``randn`` in the *normalised* space of CIFAR (per-channel mean about 0.5, std about 0.25); our images
    live in [0, 1], so the same start is N(0.5, 0.25^2) there.
    """

    name = "inverting-gradients"
    modalities = CONTINUOUS
    priors = (TotalVariation,)
    Config = InvertingGradientsConfig
    paper = "Geiping et al., Inverting Gradients, NeurIPS 2020"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        settings = InversionSettings.from_config(c, budget, objective="cosine", optimizer="adam")
        labels = known_or_recovered_labels(view, update)
        return invert(view, update, settings, labels=labels, priors=[(TotalVariation(device=self.device), c.tv)])
