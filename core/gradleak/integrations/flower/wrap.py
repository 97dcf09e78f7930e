"""Defend a Flower client you already have: gradleak update defenses and detectors around its own training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient

from ...errors import UsageError
from .arrays import model_to_ndarrays, ndarrays_to_model
from .client import screen


class DefendedClient(NumPyClient):
    """Wraps any Flower ``NumPyClient``: detectors score each model it receives, defenses change what it sends.

    ``model`` is a module of the client's architecture: its ``state_dict`` order must match the client's
    parameter arrays (gradleak reads the arrays as named tensors through it). The wrapped client trains as
    usual; its update (new weights minus received weights, parameters only) goes through the defenses, and
    the received weights plus the defended update are sent. Only ``update``-stage defenses that need no
    private batch can act on training code gradleak does not run (``dp-gaussian``, ``prune``, ``quantize``,
    ``selective-encryption`` with ``metric=magnitude``...); data, model and train-stage defenses need
    :class:`~gradleak.integrations.flower.GradleakClient`. Detectors that test the received model itself
    (``duplicate-rows``, ``trap-asymmetry``, ``weight-outliers``, ``suspicion``) apply; ``reference`` (the
    initial model, when the client has it) sharpens ``weight-outliers``. With ``refuse_flagged`` a flagged
    round returns the received weights unchanged (no update leaks).
    """

    def __init__(self, inner: NumPyClient, model: torch.nn.Module, defenses: Sequence[str] = (),
                 detectors: Sequence[str] = (), refuse_flagged: bool = False,
                 reference: torch.nn.Module | None = None, seed: int = 0, device: str = "cpu") -> None:
        from ...config import make_config
        from ...device import generator, resolve_device
        from ...registry import registry
        from ...runner import parse_component

        self.inner, self.model, self.reference, self.refuse_flagged = inner, model, reference, refuse_flagged
        dev = resolve_device(device)
        reg = registry()
        self.defenses = []
        for spec in defenses:
            name, params = parse_component(spec)
            cls = reg.get("defense", name)
            if cls.stage != "update":
                raise UsageError(f"defense '{name}' acts at the {cls.stage} stage, inside training code gradleak does not "
                                 "run here; wrap only update defenses, or train a gradleak case with GradleakClient")
            self.defenses.append(cls(make_config(cls.Config, params, cls.name), dev))
        self.detectors = [reg.get("detector", d)(device=dev) for d in detectors]
        self.gen = generator(dev, seed)

    def get_parameters(self, config: Mapping[str, Any]) -> list[np.ndarray]:
        return self.inner.get_parameters(config)

    def evaluate(self, parameters: list[np.ndarray], config: Mapping[str, Any]) -> tuple[float, int, dict]:
        return self.inner.evaluate(parameters, config)

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        from ...types import Update

        received = ndarrays_to_model(self.model, parameters)
        metrics = screen(self.detectors, received, self.reference, None)
        if metrics["gradleak_flagged"] and self.refuse_flagged:
            return parameters, 0, metrics
        before = {n: p.detach().clone() for n, p in received.named_parameters()}
        arrays, num_examples, inner_metrics = self.inner.fit(parameters, config)
        after = dict(ndarrays_to_model(self.model, arrays).named_parameters())
        update = Update({n: (after[n] - before[n]).detach() for n in before}, "delta", num_samples=num_examples)
        for defense in self.defenses:
            update = defense.apply_update(update, self.gen, None)
        if not update.is_finite():
            raise UsageError("a defense produced NaN or inf in the update; check its parameters")
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(before[name] + update.tensors[name])
        return model_to_ndarrays(self.model), num_examples, {**inner_metrics, **metrics}
