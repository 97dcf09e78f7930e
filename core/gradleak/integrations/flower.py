"""Attack a real Flower federation: a curious (or malicious) server strategy and defended clients.

Server side: :class:`AttackingStrategy` wraps any Flower strategy (FedAvg, FedProx, ...). It delegates every
decision to the wrapped strategy and, in addition, records the global model it sends to each client and,
when the client's new weights come back, turns them into a gradleak :class:`~gradleak.Update` (the weight
delta of the client's local training) and runs the chosen gradleak attacks on it, after the round or in a
background thread. Results go to the same results store as studies (``DIR/results.sqlite``), one row per
(round, client, attack), so ``gradleak report DIR`` shows the federation's reconstructions.

Malicious mode: for the clients named in ``malicious``, the strategy sends the active attack's
``prepare(model)`` instead of the global model. Flower ships parameters, not code, so only active attacks
that keep the model's architecture (changing weights only) can be used; others are refused up front.

Client side: :class:`GradleakClient` is a Flower ``NumPyClient`` training a gradleak case on its share of
the data, with any gradleak defenses, and scoring every received model with detectors (scores are sent back
as fit metrics; ``refuse_flagged`` returns the received weights unchanged when a detector fires).

Scoring needs the truth, which a real server never has: in an *audit* (a simulation the auditor controls),
clients write the batch they trained on to ``audit_dir`` and the strategy scores reconstructions against it.
Without ``audit_dir`` reconstructions are stored unscored.

Parameters travel as the model's ``state_dict`` values in order (parameters and buffers), on both sides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..optional import import_optional

flwr = import_optional("flwr", "gradleak[flower]", "the Flower integration")

from flwr.client import NumPyClient  # noqa: E402
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server.strategy import Strategy  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["AttackingStrategy", "GradleakClient", "client_fn_for", "model_to_ndarrays", "ndarrays_to_model",
           "simulate"]


def model_to_ndarrays(model: torch.nn.Module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def ndarrays_to_model(model: torch.nn.Module, arrays: Sequence[np.ndarray]) -> torch.nn.Module:
    state = model.state_dict()
    if len(arrays) != len(state):
        raise UsageError(f"received {len(arrays)} arrays for a model with {len(state)} tensors; server and clients "
                         "must use the same case")
    device = next(iter(state.values())).device
    model.load_state_dict({k: torch.as_tensor(np.asarray(a)).to(device=device, dtype=v.dtype)
                           for (k, v), a in zip(state.items(), arrays)})
    return model


def _audit_path(audit_dir: str | Path, server_round: int, partition: int) -> Path:
    return Path(audit_dir) / f"round{server_round}-client{partition}.pt"


# ------------------------------------------------------------------------------------------------------ client


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
        from ..device import generator
        from ..runner import plan

        # A plan resolves and validates the case, its parameters and the defenses; the client never attacks,
        # any attack that applies to the case completes the plan.
        self.plan = plan(case, _any_attack(case), defenses, sets, device=device)
        self.partition, self.num_partitions, self.batch_size = partition, num_partitions, batch_size
        self.defense_label = "+".join(defenses) or "none"
        self.audit_dir, self.seed, self.refuse_flagged = audit_dir, seed, refuse_flagged
        self.gen = generator(self.plan.device, seed * 7919 + partition)
        self.model = self.plan.case.build_model(self.gen)
        self.samples = self.plan.case.load_data(Path(data) if data and self.plan.case.data_is_path else data)
        from ..registry import registry

        self.detectors = [registry().get("detector", d)(device=self.plan.device) for d in detectors]
        self.reference = self.plan.case.build_model(generator(self.plan.device, seed))

    def get_parameters(self, config: Mapping[str, Any]) -> list[np.ndarray]:
        return model_to_ndarrays(self.model)

    def _batch(self, server_round: int) -> Any:
        n = len(self.samples) // self.batch_size
        if n < 1:
            raise UsageError(f"the data holds {len(self.samples)} samples, fewer than batch_size={self.batch_size}")
        k = ((server_round - 1) * self.num_partitions + self.partition) % n
        idx = torch.arange(k * self.batch_size, (k + 1) * self.batch_size)
        return self.plan.modality.select(self.samples, idx).to(self.plan.device)

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Any]) -> tuple[list[np.ndarray], int, dict]:
        from ..fl.client import client_update

        server_round = int(config.get("server_round", 1))
        model = ndarrays_to_model(self.model, parameters)
        metrics: dict[str, Any] = {"gradleak_partition": self.partition, "gradleak_defense": self.defense_label}
        flagged = False
        for det in self.detectors:
            score = float(det.score(model, self.reference))
            metrics[f"detector.{det.name}"] = score
            flagged |= score > det.threshold
        metrics["gradleak_flagged"] = flagged
        batch = self._batch(server_round)
        if flagged and self.refuse_flagged:
            return parameters, len(batch), metrics
        model.train(self.plan.case.protocol.mode == "train")
        trained_on, _, sent = client_update(model, self.plan.case, self.plan.modality, batch, self.plan.defenses, self.gen)
        if self.audit_dir is not None:
            Path(self.audit_dir).mkdir(parents=True, exist_ok=True)
            torch.save(batch.to("cpu"), _audit_path(self.audit_dir, server_round, self.partition))
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


def _any_attack(case: str) -> str:
    """An attack that applies to ``case``, only to build the client's plan (the client never attacks)."""
    from ..registry import registry

    reg = registry()
    modality = reg.get("case", case).modality
    for cls in reg.components("attack", modality=modality):
        if not cls.requires:
            return cls.name
    raise UsageError(f"no attack applies to case '{case}'; is its plugin installed?")


def client_fn_for(case: str, num_partitions: int, defenses: Mapping[int, Sequence[str]] | None = None,
                  **kwargs: Any) -> Any:
    """A Flower ``client_fn(context)`` building :class:`GradleakClient` for the context's partition id.

    ``defenses`` maps partition ids to defense specs (``{1: ["prune:ratio=0.9"]}``); others are undefended.
    """
    defenses = dict(defenses or {})

    def client_fn(context: Any) -> Any:
        partition = int(context.node_config.get("partition-id", 0))
        return GradleakClient(case, partition, num_partitions, defenses=tuple(defenses.get(partition, ("none",))),
                              **kwargs).to_client()

    return client_fn


# ------------------------------------------------------------------------------------------------------ server


class AttackingStrategy(Strategy):
    """Wraps a Flower ``strategy``: a curious server attacking every client update it receives.

    ``case`` and ``sets`` describe the clients' training (the server knows the model and, when
    ``hyperparams=known``, the local hyper-parameters); ``attacks`` are gradleak attack names (with
    ``attack_sets`` per attack); ``out`` is the results folder. ``background=True`` attacks in a worker
    thread while the federation goes on (call :meth:`wait` before reading results).
    """

    def __init__(self, strategy: Strategy, case: str, attacks: Sequence[str], out: str | Path,
                 sets: Mapping[str, Any] | None = None, attack_sets: Mapping[str, Mapping[str, Any]] | None = None,
                 budget: int | None = None, malicious: Mapping[int, str] | None = None,
                 audit_dir: str | Path | None = None, background: bool = False, name: str = "flower",
                 seed: int = 0, device: str = "cpu") -> None:
        from ..device import generator
        from ..runner import plan
        from ..study.store import ResultStore

        super().__init__()
        self.inner, self.case_name, self.name, self.seed = strategy, case, name, seed
        sets = dict(sets or {})
        self.plans = {a: plan(case, a, sets={**sets, **dict((attack_sets or {}).get(a, {}))}, device=device,
                              budget=budget) for a in attacks}
        any_plan = next(iter(self.plans.values()))
        self.case, self.modality, self.device = any_plan.case, any_plan.modality, any_plan.device
        self.model = self.case.build_model(generator(self.device, seed))
        from ..runner import _sample_shape

        self.sample_shape = _sample_shape(self.case.load_data(None))  # the data's shape is public knowledge
        self.malicious = dict(malicious or {})
        for partition, attack in self.malicious.items():
            if attack not in self.plans or not self.plans[attack].attack.active:
                raise UsageError(f"malicious client {partition}: '{attack}' is not one of the active attacks given")
        self.audit_dir, self.store = audit_dir, ResultStore(out)
        self._sent: dict[tuple[int, str], list[np.ndarray]] = {}
        self._partition_of: dict[str, int] = {}  # Flower node id -> partition id, learned from fit metrics
        self._pool = ThreadPoolExecutor(max_workers=1) if background else None
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self.rows = 0

    # Flower's Strategy interface, delegated.
    def initialize_parameters(self, client_manager: Any) -> Any:
        return self.inner.initialize_parameters(client_manager)

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        return self.inner.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Any) -> Any:
        return self.inner.evaluate(server_round, parameters)

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[tuple[Any, Any]]:
        out = []
        for proxy, ins in self.inner.configure_fit(server_round, parameters, client_manager):
            config = {**ins.config, "server_round": server_round}
            arrays = parameters_to_ndarrays(ins.parameters)
            attack = self.malicious.get(self._partition_of.get(proxy.cid, -1)) or self.malicious.get(proxy.cid)
            if attack is not None:
                arrays = self._prepare(attack, arrays)
                ins = FitIns(ndarrays_to_parameters(arrays), ins.config)
            out.append((proxy, FitIns(ins.parameters, config)))
            self._sent[(server_round, proxy.cid)] = arrays
        return out

    def _prepare(self, attack: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The active attack's modified model, as arrays; refused when it changes the architecture."""
        import copy

        from ..device import generator
        from ..view import AttackerView

        p = self.plans[attack]
        model = ndarrays_to_model(copy.deepcopy(self.model), arrays)
        view = AttackerView(model=model, loss=self.case.loss, forward=self.case.forward, modality=self.modality,
                            threat=self.case.threat_model, sample_shape=self.sample_shape,
                            num_classes=self.case.num_classes, batch_size=1, generator=generator(self.device, self.seed),
                            surrogate=self.case.public_data() if self.case.threat_model.surrogate else None)
        prepared = p.attack.prepare(model, view)
        before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        after = {k: tuple(v.shape) for k, v in prepared.state_dict().items()}
        if before != after:
            raise UsageError(f"active attack '{attack}' changes the model's architecture, which Flower cannot ship "
                             "(it sends weights, not code); use an attack that only changes weights")
        return model_to_ndarrays(prepared)

    def aggregate_fit(self, server_round: int, results: list[tuple[Any, Any]], failures: Any) -> Any:
        for proxy, res in results:
            if "gradleak_partition" in res.metrics:
                self._partition_of[proxy.cid] = int(res.metrics["gradleak_partition"])
            sent = self._sent.pop((server_round, proxy.cid), None)
            if sent is None:
                continue
            job = (server_round, sent, parameters_to_ndarrays(res.parameters), res.num_examples, dict(res.metrics))
            if self._pool is not None:
                self._futures.append(self._pool.submit(self._attack, *job))
            else:
                self._attack(*job)
        return self.inner.aggregate_fit(server_round, results, failures)

    def wait(self) -> None:
        """Block until background attacks finish (re-raising their errors)."""
        for fut in self._futures:
            fut.result()
        self._futures.clear()

    # ------------------------------------------------------------------------------------------ attacking

    def _attack(self, server_round: int, sent: list[np.ndarray], received: list[np.ndarray], num_examples: int,
                metrics: Mapping[str, Any]) -> None:
        import copy
        import time

        from ..device import generator
        from ..matching import match_order
        from ..view import AttackerView

        partition = int(metrics.get("gradleak_partition", -1))
        defense = str(metrics.get("gradleak_defense", "unknown"))
        model = ndarrays_to_model(copy.deepcopy(self.model), sent)
        after = ndarrays_to_model(copy.deepcopy(self.model), received)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        before_p, after_p = dict(model.named_parameters()), dict(after.named_parameters())
        delta = {n: (after_p[n] - before_p[n]).detach() for n in names}
        protocol = self.case.protocol
        threat = self.case.threat_model
        from ..types import Update

        update = Update(delta, "delta", num_samples=num_examples,
                        local_steps=protocol.local_steps if threat.hyperparams else 1,
                        local_lr=protocol.local_lr if threat.hyperparams else None,
                        local_batch_size=(protocol.local_batch_size or num_examples) if threat.hyperparams else None,
                        epochs=protocol.epochs)
        truth = None
        if self.audit_dir is not None:
            path = _audit_path(self.audit_dir, server_round, partition)
            if path.is_file():
                truth = torch.load(path, weights_only=False).to(self.device)
        model.train(protocol.mode == "train")
        for attack_name, p in self.plans.items():
            gen = generator(self.device, self.seed * 1_000_003 + server_round * 1000 + partition)
            view = AttackerView(model=model, loss=self.case.loss, forward=self.case.forward, modality=self.modality,
                                threat=threat, sample_shape=self.sample_shape,
                                num_classes=self.case.num_classes, batch_size=num_examples, generator=gen,
                                protocol=protocol if threat.hyperparams else None)
            key = f"{self.name}-r{server_round}-c{partition}-{attack_name}"
            spec = {"key": key, "case": self.case_name, "attack": attack_name, "defenses": [defense],
                    "seed": self.seed, "round": server_round, "client": partition,
                    "origin": f"flower round {server_round} client {partition}"}
            start = time.time()
            try:
                rec = p.attack.reconstruct(update, view, p.budget).batch
            except Exception as exc:  # one failed attack must not stop the federation
                self._store(spec, {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                   "seconds": time.time() - start})
                continue
            outcome: dict[str, Any] = {"status": "ok", "seconds": time.time() - start, "device": str(self.device),
                                       "params": {"round": server_round, "client": partition}}
            art = self.store.artifacts_dir / key
            if truth is not None:
                from ..runner import save_artifacts

                order = match_order(self.modality.pairwise_cost(rec, truth)).to(self.device)
                rec = self.modality.select(rec, order)
                scores = {m.name: m(rec, truth).detach().cpu() for m in p.metrics}
                per = [{"index": i, **{k: float(v[i]) for k, v in scores.items()}} for i in range(len(truth))]
                for row in per:
                    row["success"] = bool(self.modality.is_success(row))
                outcome["metrics"] = {k: float(v.mean()) for k, v in scores.items()}
                outcome["per_sample"] = per
                outcome["success_rate"] = sum(r["success"] for r in per) / len(per)
                outcome["artifacts"] = save_artifacts(self.modality, [truth], [rec], art)
            else:
                art.mkdir(parents=True, exist_ok=True)
                outcome["artifacts"] = self.modality.save(rec, art, "recon")
            self._store(spec, outcome)

    def _store(self, spec: dict[str, Any], outcome: dict[str, Any]) -> None:
        with self._lock:
            self.store.record(self.name, spec, self.modality.name, outcome)
            self.rows += 1


# ------------------------------------------------------------------------------------------------- simulation


def simulate(case: str, attacks: Sequence[str], out: str | Path, clients: int = 3, rounds: int = 2,
             batch_size: int = 1, sets: Mapping[str, Any] | None = None,
             attack_sets: Mapping[str, Mapping[str, Any]] | None = None, budget: int | None = None,
             defenses: Mapping[int, Sequence[str]] | None = None, detectors: Sequence[str] = (),
             malicious: Mapping[int | str, str] | None = None, seed: int = 0, name: str = "flower") -> Any:
    """Run a federation in Flower's simulation engine (FedAvg, every client every round) under attack.

    Clients train ``case`` with ``defenses`` (per partition id) and write their batches to
    ``out/audit`` so reconstructions are scored; returns the results store's DataFrame.
    """
    from flwr.server import ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    from ..device import generator

    sets = {"protocol": "fedavg", "hyperparams": "known", **dict(sets or {})}
    audit = Path(out) / "audit"
    client_sets = {k: v for k, v in sets.items() if k in _case_fields(case)}
    first = GradleakClient(case, 0, clients, batch_size, client_sets, audit_dir=None, seed=seed)
    initial = ndarrays_to_parameters(model_to_ndarrays(first.plan.case.build_model(generator(first.plan.device, seed))))
    inner = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients, min_available_clients=clients,
                   initial_parameters=initial)
    strategy = AttackingStrategy(inner, case, attacks, out, sets=sets, attack_sets=attack_sets, budget=budget,
                                 malicious=malicious, audit_dir=audit, name=name, seed=seed, device="cpu")
    client_fn = client_fn_for(case, clients, defenses, batch_size=batch_size, sets=client_sets,
                              detectors=tuple(detectors), audit_dir=str(audit), seed=seed)
    from flwr.client import ClientApp

    run_simulation(server_app=ServerApp(config=ServerConfig(num_rounds=rounds), strategy=strategy),
                   client_app=ClientApp(client_fn=client_fn), num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1},
                                   "init_args": {"include_dashboard": False, "num_cpus": clients}})
    strategy.wait()
    return strategy.store.frame()


def _case_fields(case: str) -> set[str]:
    import dataclasses

    from ..registry import registry

    return {f.name for f in dataclasses.fields(registry().get("case", case).Config)}
