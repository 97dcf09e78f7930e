"""Shared by the defense benchmarks: attack one defended FedSGD round of a case, with a fixed attack start."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

import gradleak
from gradleak.components import ClientContext
from gradleak.device import generator
from gradleak.fl.client import client_update
from gradleak.matching import match_order
from gradleak.registry import registry
from gradleak.runner import plan
from gradleak.view import AttackerView


def attack(case: str, attack_name: str, specs: list[str], index: int, budget: int, sets: dict[str, Any] | None = None,
           attack_seed: int = 0, model_seed: int = 0) -> dict[str, Any]:
    """Attack sample ``index`` of ``case``'s built-in data under ``specs``; metrics, utility costs and seconds.

    The attack gets its own generator (seed ``1000 + attack_seed``) so that every defense is attacked from the
    same starting point; ``gradleak.run`` shares the client's generator with the attack, so a defense that draws
    random numbers would also change the attack's initialisation.
    """
    p = plan(case, attack_name, specs, {**one_restart(attack_name), **(sets or {})}, "cpu", budget)
    cpu = torch.device("cpu")
    gen = generator(cpu, model_seed)
    model = p.case.build_model(gen)
    model.train(p.case.protocol.mode == "train")
    truth = p.modality.select(p.case.load_data(None), torch.arange(index, index + 1))
    start = time.perf_counter()
    batch, clean, sent = client_update(model, p.case, p.modality, truth, p.defenses, gen)
    defense_seconds = time.perf_counter() - start
    context = ClientContext(model, p.case, p.modality, batch)
    utility = {f"{d.name}.{k}": v for d in p.defenses for k, v in d.utility_cost(clean, sent, context).items()}
    threat = p.case.threat_model
    view = AttackerView(model=model, loss=p.case.loss, forward=p.case.forward, modality=p.modality, threat=threat,
                        sample_shape=tuple(truth.data.shape[1:]) if isinstance(truth.data, torch.Tensor) else (),
                        num_classes=p.case.num_classes, batch_size=1, generator=generator(cpu, 1000 + attack_seed),
                        protocol=p.case.protocol, labels=truth.labels if threat.labels else None)
    torch.manual_seed(attack_seed)
    start = time.perf_counter()
    rec = p.attack.reconstruct(sent, view, budget).batch
    attack_seconds = time.perf_counter() - start
    order = match_order(p.modality.pairwise_cost(rec, truth))
    rec = p.modality.select(rec, order)
    metrics = {}
    for name in p.modality.default_metrics:
        metric = registry().get("metric", name, modality=p.modality.name)()
        metrics[name] = float(metric(rec, truth).mean())
    return {"case": case, "attack": attack_name, "defenses": specs, "index": index, "budget": budget,
            "attack_seed": attack_seed, "metrics": metrics, "utility": utility,
            "defense_seconds": defense_seconds, "attack_seconds": attack_seconds}


def one_restart(attack_name: str) -> dict[str, Any]:
    """``{"restarts": 1}`` for an attack that has restarts (the benchmarks attack once), else nothing."""
    cls = registry().get("attack", attack_name)
    fields = getattr(getattr(cls, "Config", None), "__dataclass_fields__", {})
    return {"restarts": 1} if "restarts" in fields else {}


def machine() -> dict[str, Any]:
    return {"torch": torch.__version__, "gradleak": gradleak.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}


def write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
