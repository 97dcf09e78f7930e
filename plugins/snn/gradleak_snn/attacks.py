"""``spike-dlg``: gradient leakage that optimises the spike train itself, not an image behind it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gradleak import Attack, Reconstruction, Update, param
from gradleak.config import require_positive
from gradleak.engine import InversionSettings, invert

from .modality import SpikeTensorSpace, Spikes, model_encoding

if TYPE_CHECKING:
    from gradleak import AttackerView, SearchSpace


@dataclass(frozen=True)
class SpikeDLGConfig:
    iterations: int = param(1000, "Adam iterations")
    lr: float = param(0.1, "Adam step size on the spike logits")
    objective: Literal["l2", "cosine"] = param("l2", "gradient distance (DLG: l2)")
    hard: bool = param(True, "feed 0/1 spikes with a straight-through sigmoid gradient (false: relaxed sigmoid(z))")
    restarts: int = param(1, "random restarts optimised together; the best final objective wins")
    schedule: Literal["none", "step", "cosine"] = param("step", "learning-rate schedule")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "restarts")


class _SpikeTrainSpikes(Spikes):
    """The spikes modality with the search space of :class:`SpikeDLG` (the spike tensor itself)."""

    hard: bool = True

    def search_space(self, view: AttackerView, boxed: bool = True) -> SearchSpace:
        return SpikeTensorSpace(model_encoding(view), boxed=boxed, hard=self.hard)


class SpikeDLG(Attack):
    """Spike-domain DLG: match gradients by optimising the T x C x H x W input spike train directly.

    Aksu et al., "Privacy in Federated Learning with Spiking Neural Networks", 2025 (DLG adapted to the spike
    domain; Zhu et al. 2019's gradient matching). min_z || dL(F(S(z)), y)/dtheta - g ||, S(z) = H(z) forward with
    the gradient of sigmoid(z) (``hard``, the same straight-through trick as the network's surrogate), so the
    candidate is a genuine binary spike train; for direct encoding, per-step currents clamped to [0, 1].
    Labels are known when granted, else read off the last layer (iDLG / Wainakh et al.). DLG's L-BFGS needs
    a smooth objective, which hard spikes are not, so we use Adam with the step schedule of Inverting
    Gradients; the paper gives no optimizer for its spike-domain attack.
    """

    name = "spike-dlg"
    modalities = frozenset({"spikes"})
    Config = SpikeDLGConfig
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        from gradleak.builtin.attacks import known_or_recovered_labels

        c = self.config
        modality = _SpikeTrainSpikes(device=self.device)
        modality.hard = c.hard
        spike_view = dataclasses.replace(view, modality=modality)
        settings = InversionSettings.from_config(c, budget, optimizer="adam", boxed=True)
        labels = known_or_recovered_labels(view, update)
        return invert(spike_view, update, settings, labels=labels)


#: The attacks this module registers.
ATTACKS = [SpikeDLG]
