"""Client-side detectors of active (malicious-server) attacks; generic, they inspect any received model.

Weight-structure tests (:mod:`.detector_structure`) need only the received model (and optionally a reference
model of the expected architecture); dynamics tests (:mod:`.detector_dynamics`) also take the client's batch
as ``score(model, reference, context=ClientContext(...))``. :class:`Suspicion` combines them all.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..components import ClientContext, Detector
from .detector_dynamics import ActivationSparsity, GradientConcentration, LossJump
from .detector_structure import DuplicateRows, TrapAsymmetry, WeightOutliers

STRUCTURE = (DuplicateRows, TrapAsymmetry, WeightOutliers)
DYNAMICS = (LossJump, ActivationSparsity, GradientConcentration)


class Suspicion(Detector):
    """All detectors at once: the largest score / threshold over the weight-structure tests and, when the
    client's batch is given (``context=``), the dynamics tests; a round is flagged from 1 on.

    Carletti et al., "On the Detectability of Active Gradient Inversion Attacks in Federated Learning" (IEEE
    S&P 2026): flag a round when any test exceeds its threshold.
    """

    name = "suspicion"
    threshold = 1.0
    paper = "Carletti et al., On the Detectability of Active Gradient Inversion Attacks in FL, IEEE S&P 2026"

    def parts(self, context: ClientContext | None) -> list[Detector]:
        kinds = STRUCTURE + (DYNAMICS if context is not None else ())
        return [cls(device=self.device) for cls in kinds]

    def score(self, model: nn.Module, reference: nn.Module | None = None, *,
              context: ClientContext | None = None, **_: Any) -> float:
        return max(d.score(model, reference, context=context) / d.threshold for d in self.parts(context))


#: The detectors the built-in plugin registers.
DETECTORS: list[type] = [*STRUCTURE, *DYNAMICS, Suspicion]
