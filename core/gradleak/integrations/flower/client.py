"""The client side: a Flower ``NumPyClient`` training a gradleak case with defenses and detectors."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient

from ...errors import UsageError
from .arrays import audit_path, model_to_ndarrays, ndarrays_to_model


class GradleakClient(NumPyClient):
    """A Flower client training gradleak ``case`` on batch ``partition`` of its data, with defenses and detectors.

    In round ``r`` the client trains on batch ``(r - 1) * num_partitions + partition`` (cycling) of
    ``batch_size`` samples of the case's data (``data`` as ``--data``), with the case's protocol (set
    ``protocol=fedavg`` and its local steps through ``sets``).
    """

    def __init__(self, case: str, partition: int, num_partitions: int, batch_size: int = 1,
                 sets: Mapping[str, Any] | None = None, defenses: Sequence[str] = ("none",),
                 detectors: Sequence[str] = (), refuse_flagged: bool = False, data: str | None = None,
                 audit_dir: str | Path | None = None, seed: int = 0, device: str = "cpu") -> None:
        from ...device import generator
        from ...runner import client_plan

        self.plan = client_plan(case, defenses, sets, device=device)
        self.partition, self.num_partitions, self.batch_size = partition, num_partitions, batch_size
        self.defense_label = "+".join(defenses) or "none"
        self.audit_dir, self.seed, self.refuse_flagged = audit_dir, seed, refuse_flagged
        self.gen = generator(self.plan.device, seed * 7919 + partition)
        self.model = self.plan.case.build_model(self.gen)
        self.samples = self.plan.case.load_data(Path(data) if data and self.plan.case.data_is_path else data)
        from ...registry import registry

        self.detectors = [registry().get("detector", d)(device=self.plan.device) for d in detectors]
        self.reference = self.plan.case.build_model(generator(self.plan.device, seed))

    def get_parameters(self, config: Mapping[str, Any]) -> list[np.ndarray]:
        return model_to_ndarrays(self.model)

    def get_properties(self, config: Mapping[str, Any]) -> dict[str, Any]:
        # The server's audit needs to know which partition (and audit file) a Flower node stands for.
        return {"gradleak_partition": self.partition}

    def _batch(self, server_round: int) -> Any:
        n = len(self.samples) // self.batch_size
        if n < 1:
            raise UsageError(f"the data holds {len(self.samples)} samples, fewer than batch_size={self.batch_size}")
        k = ((server_round - 1) * self.num_partitions + self.partition) % n
        idx = torch.arange(k * self.batch_size, (k + 1) * self.batch_size)
        return self.plan.modality.select(self.samples, idx).to(self.plan.device)

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        from ...components import ClientContext
        from ...fl.client import client_update

        server_round = int(config.get("server_round", 1))
        model = ndarrays_to_model(self.model, parameters)
        metrics: dict[str, Any] = {"gradleak_partition": self.partition, "gradleak_defense": self.defense_label}
        batch = self._batch(server_round)
        context = ClientContext(model, self.plan.case, self.plan.modality, batch)
        metrics.update(screen(self.detectors, model, self.reference, context))
        if metrics["gradleak_flagged"] and self.refuse_flagged:
            return parameters, len(batch), metrics
        model.train(self.plan.case.protocol.mode == "train")
        trained_on, _, sent = client_update(model, self.plan.case, self.plan.modality, batch, self.plan.defenses, self.gen)
        if self.audit_dir is not None:
            Path(self.audit_dir).mkdir(parents=True, exist_ok=True)
            torch.save(batch.to("cpu"), audit_path(self.audit_dir, server_round, self.partition))
        lr = self.plan.case.protocol.local_lr
        with torch.no_grad():
            new = {n: p.detach().clone() for n, p in model.named_parameters()}
            for n, t in sent.tensors.items():
                # A FedSGD client's "update" is a gradient: apply one step so the server still receives weights.
                new[n] = new[n] + (t if sent.kind == "delta" else -lr * t)
        state = model.state_dict()
        arrays = [(new[k] if k in new else v).detach().cpu().numpy().copy() for k, v in state.items()]
        return arrays, len(batch), metrics

    def evaluate(self, parameters: list[np.ndarray], config: Mapping[str, Any]) -> tuple[float, int, dict]:
        model = ndarrays_to_model(self.model, parameters)
        batch = self._batch(int(config.get("server_round", 1)))
        with torch.no_grad():
            loss = self.plan.case.loss(self.plan.case.forward(model, batch), batch.labels)
        return float(loss), len(batch), {}


def screen(detectors: Sequence[Any], model: torch.nn.Module, reference: torch.nn.Module | None,
           context: Any) -> dict[str, Any]:
    """Every detector's score of a received model (``detector.<name>``) and ``gradleak_flagged``: any above its
    threshold. Dynamics detectors (and any whose ``score`` accepts ``context``) also see the client's batch."""
    import inspect

    out: dict[str, Any] = {}
    flagged = False
    for det in detectors:
        params = inspect.signature(det.score).parameters
        takes_context = "context" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        score = float(det.score(model, reference, context=context) if takes_context else det.score(model, reference))
        out[f"detector.{det.name}"] = score
        flagged |= score > det.threshold
    out["gradleak_flagged"] = flagged
    return out


def client_fn_for(case: str, num_partitions: int, defenses: Mapping[int, Sequence[str]] | None = None,
                  refuse_flagged: bool | Collection[int] = False, **kwargs: Any) -> Any:
    """A Flower ``client_fn(context)`` building :class:`GradleakClient` for the context's partition id.

    ``defenses`` maps partition ids to defense specs (``{1: ["prune:ratio=0.9"]}``); others are undefended.
    ``refuse_flagged``: True for every client, or the partition ids that refuse rounds their detectors flag.
    """
    defenses = dict(defenses or {})

    def client_fn(context: Any) -> Any:
        partition = int(context.node_config.get("partition-id", 0))
        refuse = refuse_flagged if isinstance(refuse_flagged, bool) else partition in refuse_flagged
        return GradleakClient(case, partition, num_partitions, defenses=tuple(defenses.get(partition, ("none",))),
                              refuse_flagged=refuse, **kwargs).to_client()

    return client_fn
