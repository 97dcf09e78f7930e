"""What the attacker sees: the model as sent, the update's context, and what the threat model grants."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .fl.protocol import Protocol, ThreatModel
from .types import Batch

if TYPE_CHECKING:
    from .components import Case, Modality


@dataclass(frozen=True)
class AttackerView:
    """Everything an attack may use. Never holds the private batch.

    ``model`` has the parameters the server sent, in the client's mode; ``loss(outputs, labels)`` and
    ``forward(model, inputs)`` are the case's public training code. Granted capabilities fill the optional
    fields: ``labels`` (true labels, in the client's order), ``bn_stats`` (per BatchNorm module name, the
    client's batch ``(mean, var)``), ``protocol`` (local hyper-parameters), ``surrogate`` (public data).
    """

    model: torch.nn.Module
    loss: Callable[[Any, torch.Tensor | None], torch.Tensor]
    forward: Callable[[torch.nn.Module, Any], Any]
    modality: Modality
    threat: ThreatModel
    sample_shape: tuple[int, ...]
    num_classes: int | None
    batch_size: int
    generator: torch.Generator
    protocol: Protocol | None = None
    labels: torch.Tensor | None = None
    bn_stats: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    surrogate: Batch | None = None
    progress: Callable[[int, int, float], None] | None = field(default=None, compare=False)

    @classmethod
    def granted(
        cls,
        case: Case,
        modality: Modality,
        model: torch.nn.Module,
        *,
        batch_size: int,
        sample_shape: tuple[int, ...],
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> AttackerView:
        """The view ``case``'s threat model grants on ``model``.

        ``labels`` are the client's true labels; like the protocol and the case's public data they reach the
        view only where the threat model grants them, so every caller (the runner, the Flower server,
        benchmarks) hands an attack exactly the same knowledge.
        """
        threat = case.threat_model
        return cls(
            model=model, loss=case.loss, forward=case.forward, modality=modality, threat=threat,
            sample_shape=sample_shape, num_classes=case.num_classes, batch_size=batch_size, generator=generator,
            protocol=case.protocol if threat.hyperparams else None,
            labels=labels if threat.labels else None,
            surrogate=case.public_data() if threat.surrogate else None,
            progress=progress,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def capabilities(self) -> frozenset[str]:
        return self.threat.capabilities

    def report(self, step: int, total: int, objective: float) -> None:
        """Report progress (the CLI shows a bar; silent when nobody listens)."""
        if self.progress is not None:
            self.progress(step, total, objective)
