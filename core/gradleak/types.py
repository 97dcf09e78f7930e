"""Values that flow between components: frozen dataclasses, never mutated in place."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Capability = Literal["labels", "bn_stats", "hyperparams", "surrogate", "modify_model"]
#: Every capability a threat model can grant, in the order ``gradleak show`` lists them.
CAPABILITIES: tuple[str, ...] = ("labels", "bn_stats", "hyperparams", "surrogate", "modify_model")


@dataclass(frozen=True)
class Batch:
    """The private data of one client step, in its modality's own form.

    ``data`` is whatever the modality uses (an image tensor ``(N, C, H, W)``, a PyG ``Batch``, token ids,
    transition tuples, spike trains); ``labels`` are class ids ``(N,)`` (or soft labels ``(N, K)``)
    or ``None`` where the task has none.
    """

    data: Any
    labels: torch.Tensor | None
    modality: str

    def __len__(self) -> int:
        if self.labels is not None:
            return int(self.labels.shape[0])
        return len(self.data)

    @property
    def device(self) -> torch.device:
        for value in (self.data, self.labels):
            dev = getattr(value, "device", None)
            if dev is not None:
                return torch.device(dev)
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> Batch:
        data = self.data.to(device) if hasattr(self.data, "to") else self.data
        labels = self.labels.to(device) if self.labels is not None else None
        return dataclasses.replace(self, data=data, labels=labels)

    def replace(self, **changes: Any) -> Batch:
        return dataclasses.replace(self, **changes)

    def labels_at(self, index: torch.Tensor) -> torch.Tensor | None:
        """The labels of the samples at ``index`` (``None`` when the batch has none), for ``Modality.select``."""
        return self.labels[index.to(self.labels.device)] if self.labels is not None else None

    @staticmethod
    def joined_labels(batches: Sequence[Batch]) -> torch.Tensor | None:
        """The labels of ``batches`` end to end, ``None`` unless every batch has labels, for ``Modality.concat``."""
        if all(b.labels is not None for b in batches):
            return torch.cat([b.labels for b in batches])
        return None


@dataclass(frozen=True)
class Update:
    """What the server observes from one round: named tensors plus the metadata the protocol reveals.

    ``tensors`` maps parameter names (as in ``model.named_parameters()``) to the gradient (``kind="gradient"``,
    FedSGD) or to the weight change ``theta_after - theta_before`` (``kind="delta"``, FedAvg).
    ``visible`` (optional) maps tensor names to boolean masks of the coordinates the server can read in the
    clear (selective encryption hides the rest; they hold zeros in ``tensors``); a tensor without a mask is
    wholly visible. Optimization attacks then match only the visible coordinates.
    """

    tensors: Mapping[str, torch.Tensor]
    kind: Literal["gradient", "delta"]
    num_samples: int
    local_steps: int = 1
    local_lr: float | None = None
    local_batch_size: int | None = None
    epochs: int = 1
    num_clients: int = 1
    buffers: Mapping[str, torch.Tensor] = field(default_factory=dict)
    visible: Mapping[str, torch.Tensor] | None = None

    def replace(self, **changes: Any) -> Update:
        return dataclasses.replace(self, **changes)

    def with_tensors(self, tensors: Mapping[str, torch.Tensor]) -> Update:
        return dataclasses.replace(self, tensors=dict(tensors))

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self.tensors.values())


@dataclass(frozen=True)
class Reconstruction:
    """What an attack returns: its best guess of the batch, plus diagnostics.

    ``objective`` is the final value of the attack's own objective for the returned candidate
    (``None`` for analytic attacks); ``info`` holds per-restart objectives, iterations run, etc.
    ``failed`` maps indices of ``batch`` the attack knows to be wrong to a one-word reason (``"rank"``): the
    runner records the truth sample matched to each as ``failed: <reason>`` with no metric values. A batch
    that fails as a whole raises :class:`gradleak.errors.AttackFailed` instead.
    """

    batch: Batch
    objective: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    failed: Mapping[int, str] = field(default_factory=dict)
