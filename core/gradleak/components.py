"""Base classes of everything a plugin registers.

Each component is a small class carrying its own metadata as class attributes (``name``, ``modalities``,
``requires``, a ``Config`` dataclass of typed parameters with defaults, and a docstring naming its paper).
The registry stores classes; the runner instantiates them with a built ``Config`` and a ``torch.device``.

Data kinds: ``modalities`` is the set of modality names (``"image"``, ``"graph"``, ``"text"``,
``"transition"``, ``"spikes"``) a component applies to; ``None`` means every modality.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from .config import param, require_count
from .fl.protocol import Protocol, ThreatModel
from .types import Batch, Reconstruction, Update

if TYPE_CHECKING:
    from .view import AttackerView


@dataclass(frozen=True)
class NoConfig:
    """A component without parameters."""


class Component(ABC):
    """Common metadata of every registered component.

    ``name``: kebab-case for cases, attacks, priors, defenses and detectors; snake_case for metrics.
    ``plugin`` is filled in by the registry with the registering plugin's name.
    """

    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    modalities: ClassVar[frozenset[str] | None] = None
    requires: ClassVar[frozenset[str]] = frozenset()
    Config: ClassVar[type] = NoConfig
    paper: ClassVar[str] = ""
    plugin: ClassVar[str] = ""

    def __init__(self, config: Any | None = None, device: torch.device | str = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        self.device = torch.device(device)

    @classmethod
    def qualified_name(cls) -> str:
        return f"{cls.plugin}/{cls.name}" if cls.plugin else cls.name

    @classmethod
    def applies_to(cls, modality: str) -> bool:
        return cls.modalities is None or modality in cls.modalities

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------------------------------- modality


class SearchSpace(ABC):
    """How a generic optimization attack parameterizes, relaxes and decodes a candidate batch.

    The engine optimizes a free tensor ``z`` of shape ``(restarts, batch, *sample_shape)``; ``decode`` maps
    it (differentiably) to model inputs of the same leading shape, ``project`` enforces constraints in place
    after each optimizer step, and ``to_batch`` turns one restart's decoded inputs into a :class:`Batch`.
    """

    @abstractmethod
    def init(self, restarts: int, batch_size: int, generator: torch.Generator) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def project(self, z: torch.Tensor) -> None:
        """Enforce hard constraints on ``z`` in place (no-op by default)."""

    @abstractmethod
    def to_batch(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> Batch: ...


class Modality(Component):
    """A data kind: its search space, how reconstructions are matched to the truth, its metrics and success.

    ``primary_metric`` is the metric of per-modality tables; ``default_metrics`` are computed on every run;
    ``success_criterion`` states in words what :meth:`is_success` tests (printed under cross-modality tables).
    """

    kind = "modality"
    primary_metric: ClassVar[str]
    default_metrics: ClassVar[tuple[str, ...]] = ()
    success_criterion: ClassVar[str] = ""

    @abstractmethod
    def is_success(self, metrics: Mapping[str, float]) -> bool:
        """Whether one sample's metrics count as a successful reconstruction."""

    def search_space(self, view: AttackerView, boxed: bool = True) -> SearchSpace:
        raise NotImplementedError(f"modality '{self.name}' has no continuous search space")

    @abstractmethod
    def pairwise_cost(self, recon: Batch, truth: Batch) -> torch.Tensor:
        """``(len(recon), len(truth))`` costs; the runner matches samples by minimum total cost."""

    @abstractmethod
    def select(self, batch: Batch, index: torch.Tensor) -> Batch:
        """The samples of ``batch`` at ``index`` (in that order)."""

    @abstractmethod
    def concat(self, batches: list[Batch]) -> Batch:
        """One batch holding the samples of ``batches`` in order."""

    @abstractmethod
    def save(self, batch: Batch, directory: Path, stem: str) -> dict[str, str]:
        """Write ``batch`` in the plain format of DESIGN.md; return ``{artifact: path}``."""

    def save_pictures(self, truth: Batch, recon: Batch, directory: Path) -> dict[str, str]:
        """Optionally draw the reconstruction beside the truth; return ``{artifact: path}``."""
        return {}


# --------------------------------------------------------------------------------------------------- case


@dataclass(frozen=True)
class CaseConfig:
    """Protocol and threat-model knobs every case accepts (``--set key=value``)."""

    protocol: Literal["fedsgd", "fedavg", "aggregate"] = param("fedsgd", "FL protocol")
    mode: Literal["train", "eval"] = param("eval", "client model mode (BatchNorm/dropout behaviour)")
    local_steps: int = param(1, "local SGD steps per epoch (fedavg/aggregate)")
    local_lr: float = param(1e-2, "client learning rate (fedavg)")
    local_batch_size: int | None = param(None, "client mini-batch size (fedavg); default: whole batch")
    epochs: int = param(1, "local epochs (fedavg)")
    clients: int = param(1, "clients sharing one aggregate (aggregate)")
    labels: Literal["known", "unknown"] = param("unknown", "does the attacker know the labels")
    bn_stats: Literal["known", "unknown"] = param("unknown", "does the attacker know BatchNorm batch statistics")
    hyperparams: Literal["known", "unknown"] = param("known", "does the attacker know local hyper-parameters")
    surrogate: Literal["known", "unknown"] = param("unknown", "does the attacker hold public surrogate data")
    malicious: bool = param(False, "may the server modify the model it sends")
    pretrain_steps: int = param(0, "SGD steps on public data before the attacked round")

    def validate(self, owner: str) -> None:
        from .errors import ConfigError

        require_count(self, owner, "local_steps", "epochs", "clients")
        if self.local_batch_size is not None and self.local_batch_size < 1:
            raise ConfigError(f"{owner}: local_batch_size must be >= 1, got {self.local_batch_size}")
        if self.pretrain_steps < 0:
            raise ConfigError(f"{owner}: pretrain_steps must be >= 0, got {self.pretrain_steps}")


class Case(Component):
    """What is attacked: a model, a loss, a private data source, the FL protocol and the threat model.

    Subclasses set ``name`` (registered as ``<plugin>/<name>``), ``modality``, ``num_classes``,
    ``default_batch_size``, a ``Config`` that extends :class:`CaseConfig`, and implement
    :meth:`build_model`, :meth:`loss` and :meth:`load_data`.
    """

    kind = "case"
    modality: ClassVar[str]
    num_classes: ClassVar[int | None] = None
    default_batch_size: ClassVar[int] = 1
    #: True when the built-in data comes from the internet (e.g. MedMNIST): offline, ``load_data(None)`` raises a
    #: :class:`~gradleak.errors.DataError` saying where to get it, and the conformance kit skips its data checks.
    online_data: ClassVar[bool] = False
    #: Metrics computed on this case's runs in addition to its modality's defaults (e.g. a medical case's
    #: ``attacker_acc``).
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    #: Whether ``--data`` names a file or folder (checked to exist before any compute); False for cases
    #: whose ``--data`` is a name, such as a Gymnasium environment id (``load_data`` validates it).
    data_is_path: ClassVar[bool] = True
    Config = CaseConfig

    @abstractmethod
    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        """A freshly initialised model on ``self.device``, deterministic under ``generator``."""

    @abstractmethod
    def loss(self, outputs: Any, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean loss over the batch. ``labels`` may be class ids ``(N,)`` or probabilities ``(N, K)``."""

    def forward(self, model: torch.nn.Module, batch: Batch) -> Any:
        """Run the model on a batch's data (override for models taking more than one tensor)."""
        return model(batch.data)

    @abstractmethod
    def load_data(self, path: Path | None) -> Batch:
        """All private samples: the built-in offline data when ``path`` is None, else the user's ``--data``."""

    def public_data(self) -> Batch | None:
        """Public data for pretraining and the ``surrogate`` capability (None when the case has none)."""
        return None

    @property
    def protocol(self) -> Protocol:
        c = self.config
        return Protocol(
            name=c.protocol,
            mode=c.mode,
            local_steps=c.local_steps,
            local_lr=c.local_lr,
            local_batch_size=c.local_batch_size,
            epochs=c.epochs,
            clients=c.clients,
        )

    @property
    def threat_model(self) -> ThreatModel:
        c = self.config
        return ThreatModel(
            labels=c.labels == "known",
            bn_stats=c.bn_stats == "known",
            hyperparams=c.hyperparams == "known",
            surrogate=c.surrogate == "known",
            modify_model=c.malicious,
        )


# --------------------------------------------------------------------------------------------------- attack side


class Attack(Component):
    """Reconstructs private data from an update.

    ``reconstruct(update, view, budget)`` sees only what the threat model grants (``view``); ``budget`` is the
    main iteration budget (``None``: the Config's default). An active attack sets ``active = True`` (and
    ``requires`` includes ``"modify_model"``) and implements :meth:`prepare`, the malicious server's change
    to the model before it is sent.
    """

    kind = "attack"
    active: ClassVar[bool] = False
    #: Prior classes the attack adds to its objective; their ``requires`` are checked with the attack's.
    priors: ClassVar[tuple[type[Prior], ...]] = ()

    @abstractmethod
    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction: ...

    def prepare(self, model: torch.nn.Module, view: AttackerView) -> torch.nn.Module:
        """The malicious server's modification of the model (active attacks only)."""
        return model


class Prior(Component):
    """A differentiable penalty on candidate inputs, added to an optimization attack's objective.

    ``penalty(inputs, view)`` takes decoded candidates of shape ``(restarts, batch, *sample_shape)`` and
    returns one value per restart, shape ``(restarts,)``.
    """

    kind = "prior"

    @abstractmethod
    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor: ...


class Metric(Component):
    """Scores a reconstruction against the truth, one value per sample (samples already matched).

    ``__call__(recon, truth)`` returns a float tensor of shape ``(len(truth),)``.
    """

    kind = "metric"
    higher_is_better: ClassVar[bool] = True

    @abstractmethod
    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor: ...


DefenseStage = Literal["data", "update", "train", "model"]


@dataclass(frozen=True)
class ClientContext:
    """What a client-side defense may look at: its own model, training code and private batch.

    ``model`` is the model as the client received it (before local training; never modify it), ``batch`` the
    private batch after data-stage defenses. :meth:`loss` evaluates the client's loss with other parameters,
    as CENSOR's candidate selection and utility costs need.
    """

    model: torch.nn.Module
    case: Case
    modality: Modality
    batch: Batch

    def loss(self, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The client's mean loss on its batch, with ``params`` (by name) replacing the model's parameters."""
        from torch.func import functional_call

        if params is None:
            return self.case.loss(self.case.forward(self.model, self.batch), self.batch.labels)
        full = {n: p for n, p in self.model.named_parameters()}
        full.update(params)

        class _Bound(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                return functional_call(self.inner, full, args, kwargs)

        return self.case.loss(self.case.forward(_Bound(self.model), self.batch), self.batch.labels)


class Defense(Component):
    """Protects a client. ``stage`` says where it acts:

    - ``"data"``: :meth:`apply_data` transforms the private batch before training;
    - ``"model"``: :meth:`apply_model` changes the model the client trains (e.g. a noise layer inserted in a
      latent space); the server receives the update of the changed model;
    - ``"train"``: :meth:`apply_step` transforms every local step's gradient (DP-SGD style);
    - ``"update"``: :meth:`apply_update` transforms the update before it is sent; ``context`` gives the
      client's model and batch to defenses that need them (CENSOR, Soteria).

    :meth:`utility_cost` reports what the defense costs the federation (by default the relative L2 distortion
    of the update; ``context`` allows loss-based costs).
    """

    kind = "defense"
    stage: ClassVar[DefenseStage] = "update"
    #: A ``"train"`` defense with ``per_sample = True`` gets per-sample gradients ``(N, *shape)`` in
    #: :meth:`apply_step` and returns the batch gradient (DP-SGD's per-example clipping needs them).
    per_sample: ClassVar[bool] = False

    def apply_data(self, batch: Batch, generator: torch.Generator) -> Batch:
        return batch

    def apply_model(self, model: torch.nn.Module, context: ClientContext, generator: torch.Generator) -> torch.nn.Module:
        return model

    def apply_update(self, update: Update, generator: torch.Generator, context: ClientContext | None = None) -> Update:
        return update

    def apply_step(self, grads: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        return grads

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        num = sum(float((defended.tensors[k] - v).pow(2).sum()) for k, v in clean.tensors.items())
        den = sum(float(v.pow(2).sum()) for v in clean.tensors.values())
        return {"update_distortion": (num / den) ** 0.5 if den > 0 else 0.0}


class Detector(Component):
    """A client-side check of a received model (or of training dynamics); higher score = more suspicious."""

    kind = "detector"
    threshold: ClassVar[float] = 0.5

    @abstractmethod
    def score(self, model: torch.nn.Module, reference: torch.nn.Module | None = None) -> float: ...


KINDS: dict[str, type[Component]] = {
    "modality": Modality,
    "case": Case,
    "attack": Attack,
    "prior": Prior,
    "metric": Metric,
    "defense": Defense,
    "detector": Detector,
}
