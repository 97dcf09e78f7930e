"""The federated protocol a client follows and the threat model the server operates under."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import CapabilityError
from ..types import CAPABILITIES

ProtocolName = Literal["fedsgd", "fedavg", "aggregate"]
Mode = Literal["train", "eval"]


@dataclass(frozen=True)
class Protocol:
    """How a client turns its private batch into the update the server sees.

    - ``fedsgd``: one gradient of the mean loss over the whole batch.
    - ``fedavg``: ``epochs`` passes of ``local_steps`` SGD steps with learning rate ``local_lr`` on
      consecutive mini-batches of ``local_batch_size`` samples (cycled, unshuffled); the server sees the
      weight delta ``theta_after - theta_before``.
    - ``aggregate``: the batch is split evenly across ``clients`` clients, each runs FedSGD (or FedAvg when
      ``local_steps > 1``), and the server sees only the sample-weighted mean of their updates (as with
      secure aggregation).

    ``mode="train"`` runs the model in training mode (BatchNorm uses batch statistics and updates its running
    statistics, dropout is active); ``mode="eval"`` in evaluation mode.
    """

    name: ProtocolName = "fedsgd"
    mode: Mode = "eval"
    local_steps: int = 1
    local_lr: float = 1e-2
    local_batch_size: int | None = None
    epochs: int = 1
    clients: int = 1
    secure_aggregation: bool = True


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker (the server) knows and may do; each flag is one capability.

    - ``labels``: the private labels are known (e.g. leaked or recovered beforehand).
    - ``bn_stats``: the client's BatchNorm batch statistics are known (Yin et al. 2021).
    - ``hyperparams``: local learning rate, steps, batch size and epochs are known (FedAvg attacks).
    - ``surrogate``: public data from the same distribution is available.
    - ``modify_model``: the server is malicious and may change the model it sends.
    """

    labels: bool = False
    bn_stats: bool = False
    hyperparams: bool = True
    surrogate: bool = False
    modify_model: bool = False

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(name for name in CAPABILITIES if getattr(self, name))

    def require(self, needed: frozenset[str] | set[str], who: str) -> None:
        """Raise :class:`CapabilityError` if ``needed`` is not granted, naming the missing capabilities."""
        missing = sorted(set(needed) - self.capabilities)
        if missing:
            fixes = ", ".join(_FIX.get(m, m) for m in missing)
            raise CapabilityError(
                f"{who} needs the capability {', '.join(repr(m) for m in missing)}, which the threat model "
                f"withholds; grant it with {fixes}"
            )


_FIX = {
    "labels": "--set labels=known",
    "bn_stats": "--set bn_stats=known",
    "hyperparams": "--set hyperparams=known",
    "surrogate": "--set surrogate=known",
    "modify_model": "--set malicious=true",
}
