"""gradleak: gradient inversion attacks, defenses and leakage metrics for federated learning.

The public API. Plugins import what they subclass from here; everything else is internal::

    import gradleak
    result = gradleak.run("vision/lenet", "dlg", seed=0, device="cpu")
    print(result.metrics)
"""

from __future__ import annotations

from .components import (
    Attack,
    Case,
    CaseConfig,
    ClientContext,
    Component,
    Defense,
    Detector,
    Metric,
    Modality,
    NoConfig,
    Prior,
    SearchSpace,
)
from .config import param
from .errors import (
    AttackFailed,
    CapabilityError,
    ConfigError,
    DataError,
    DependencyMissing,
    GradleakError,
    IncompatibleError,
    UnknownComponent,
    UsageError,
)
from .fl.protocol import Protocol, ThreatModel
from .hookspecs import hookimpl
from .optional import import_optional
from .plugins import register_all
from .registry import Registry, registry, reset_registry
from .runner import RunResult, plan, run
from .types import CAPABILITIES, Batch, Reconstruction, Update
from .view import AttackerView

__version__ = "0.1.0"

__all__ = [
    "CAPABILITIES", "Attack", "AttackFailed", "AttackerView", "Batch", "CapabilityError", "Case", "CaseConfig", "ClientContext", "Component",
    "ConfigError", "DataError", "Defense", "DependencyMissing", "Detector", "GradleakError", "IncompatibleError",
    "Metric", "Modality", "NoConfig", "Prior", "Protocol", "Reconstruction", "Registry", "RunResult",
    "SearchSpace", "ThreatModel", "UnknownComponent", "Update", "UsageError", "__version__", "hookimpl",
    "import_optional", "param", "plan", "register_all", "registry", "reset_registry", "run",
]
