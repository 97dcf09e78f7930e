"""The server side: a Flower strategy wrapper attacking (and, in malicious mode, trapping) client updates."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.common import FitIns, GetPropertiesIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import Strategy

from ...errors import UsageError
from .arrays import audit_path, model_to_ndarrays, ndarrays_to_model

log = logging.getLogger(__name__)


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
        from ...device import generator
        from ...runner import plan
        from ...study.store import ResultStore

        super().__init__()
        self.inner, self.case_name, self.name, self.seed = strategy, case, name, seed
        sets = dict(sets or {})
        self.plans = {a: plan(case, a, sets={**sets, **dict((attack_sets or {}).get(a, {}))}, device=device,
                              budget=budget) for a in attacks}
        any_plan = next(iter(self.plans.values()))
        self.case, self.modality, self.device = any_plan.case, any_plan.modality, any_plan.device
        self.model = self.case.build_model(generator(self.device, seed))
        from ...runner import _sample_shape

        self.sample_shape = _sample_shape(self.case.load_data(None))  # the data's shape is public knowledge
        self.malicious = {int(k): v for k, v in (malicious or {}).items()}
        for partition, attack in self.malicious.items():
            if attack not in self.plans or not self.plans[attack].attack.active:
                raise UsageError(f"malicious client {partition}: '{attack}' is not one of the active attacks given; "
                                 "add it to attacks")
        self.audit_dir, self.store = audit_dir, ResultStore(out)
        # (round, Flower node id) -> the arrays sent and the active attack they were prepared for (None: honest)
        self._sent: dict[tuple[int, str], tuple[list[np.ndarray], str | None]] = {}
        self._partition_of: dict[str, int] = {}  # Flower node id -> partition id
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
            attack = self.malicious.get(self._partition(proxy, server_round)) if self.malicious else None
            if attack is not None:
                arrays = self._prepare(attack, arrays)
                ins = FitIns(ndarrays_to_parameters(arrays), ins.config)
            out.append((proxy, FitIns(ins.parameters, config)))
            self._sent[(server_round, proxy.cid)] = (arrays, attack)
        return out

    def _partition(self, proxy: Any, server_round: int) -> int:
        """The partition id of a Flower node, asked once (a real malicious server would pick nodes by id)."""
        if proxy.cid not in self._partition_of:
            res = proxy.get_properties(GetPropertiesIns(config={}), timeout=None, group_id=server_round)
            self._partition_of[proxy.cid] = int(res.properties.get("gradleak_partition", -1))
        return self._partition_of[proxy.cid]

    def _prepare(self, attack: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The active attack's modified model, as arrays; refused when it changes the architecture."""
        import copy

        from ...device import generator
        from ...view import AttackerView

        p = self.plans[attack]
        model = ndarrays_to_model(copy.deepcopy(self.model), arrays)
        view = AttackerView.granted(self.case, self.modality, model, batch_size=1, sample_shape=self.sample_shape,
                                    generator=generator(self.device, self.seed))
        prepared = p.attack.prepare(model, view)
        before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        after = {k: tuple(v.shape) for k, v in prepared.state_dict().items()}
        if before != after:
            raise UsageError(f"active attack '{attack}' changes the model's architecture, which Flower cannot ship "
                             "(it sends weights, not code); use an attack that only changes weights")
        return model_to_ndarrays(prepared)

    def aggregate_fit(self, server_round: int, results: list[tuple[Any, Any]], failures: Any) -> Any:
        prepared = {cid for (r, cid), (_, attack) in self._sent.items() if r == server_round and attack is not None}
        for failure in failures:
            reason = repr(failure) if isinstance(failure, BaseException) else "no result"
            log.warning("round %d: a client failed (%s); there is no update of it to attack", server_round, reason)
        for proxy, res in results:
            if "gradleak_partition" in res.metrics:
                self._partition_of[proxy.cid] = int(res.metrics["gradleak_partition"])
            sent = self._sent.pop((server_round, proxy.cid), None)
            if sent is None:
                continue
            job = (server_round, *sent, parameters_to_ndarrays(res.parameters), res.num_examples, dict(res.metrics))
            if self._pool is not None:
                self._futures.append(self._pool.submit(self._attack, *job))
            else:
                self._attack(*job)
        for key in [k for k in self._sent if k[0] <= server_round]:  # clients that failed this round
            del self._sent[key]
        # A malicious server keeps its traps out of the global model: aggregating updates computed on a prepared
        # model would spoil the model and tip off honest clients' detectors in the next round.
        honest = [(proxy, res) for proxy, res in results if proxy.cid not in prepared]
        if not honest:
            return None, {}
        return self.inner.aggregate_fit(server_round, honest, failures)

    def wait(self) -> None:
        """Block until background attacks finish (re-raising their errors)."""
        for fut in self._futures:
            fut.result()
        self._futures.clear()

    # ------------------------------------------------------------------------------------------ attacking

    def _attack(self, server_round: int, sent: list[np.ndarray], prepared_for: str | None,
                received: list[np.ndarray], num_examples: int, metrics: Mapping[str, Any]) -> None:
        """Run the passive attacks (and the active one this client's model was prepared for) on its update."""
        import copy
        import time

        from ...device import generator
        from ...matching import match_order
        from ...view import AttackerView

        partition = int(metrics.get("gradleak_partition", -1))
        defense = str(metrics.get("gradleak_defense", "unknown"))
        detected = {k: float(v) for k, v in metrics.items() if k.startswith("detector.")}
        plans = {a: p for a, p in self.plans.items() if not p.attack.active or a == prepared_for}
        if bool(metrics.get("gradleak_flagged")) and all(np.array_equal(a, b) for a, b in zip(sent, received)):
            for attack_name in plans:
                spec = self._spec(server_round, partition, attack_name, defense)
                self._store(spec, {"status": "skipped", "metrics": detected, "params": spec["params"],
                                   "error": "the client's detectors flagged the received model and it refused "
                                            "the round: " + ", ".join(f"{k}={v:.3g}" for k, v in detected.items())})
            return
        model = ndarrays_to_model(copy.deepcopy(self.model), sent)
        after = ndarrays_to_model(copy.deepcopy(self.model), received)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        before_p, after_p = dict(model.named_parameters()), dict(after.named_parameters())
        delta = {n: (after_p[n] - before_p[n]).detach() for n in names}
        protocol = self.case.protocol
        threat = self.case.threat_model
        from ...types import Update

        update = Update(delta, "delta", num_samples=num_examples,
                        local_steps=protocol.local_steps if threat.hyperparams else 1,
                        local_lr=protocol.local_lr if threat.hyperparams else None,
                        local_batch_size=(protocol.local_batch_size or num_examples) if threat.hyperparams else None,
                        epochs=protocol.epochs)
        truth = None
        if self.audit_dir is not None:
            path = audit_path(self.audit_dir, server_round, partition)
            if path.is_file():
                truth = torch.load(path, weights_only=False).to(self.device)
        model.train(protocol.mode == "train")
        for attack_name, p in plans.items():
            gen = generator(self.device, self.seed * 1_000_003 + server_round * 1000 + partition)
            view = AttackerView.granted(self.case, self.modality, model, batch_size=num_examples,
                                        sample_shape=self.sample_shape, generator=gen)
            spec = self._spec(server_round, partition, attack_name, defense)
            key = spec["key"]
            start = time.time()
            try:
                rec = p.attack.reconstruct(update, view, p.budget).batch
            except Exception as exc:  # one failed attack must not stop the federation
                self._store(spec, {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "metrics": detected,
                                   "params": spec["params"],
                                   "seconds": time.time() - start})
                continue
            outcome: dict[str, Any] = {"status": "ok", "seconds": time.time() - start, "device": str(self.device),
                                       "params": spec["params"], "metrics": dict(detected)}
            art = self.store.artifacts_dir / key
            if truth is not None:
                from ...runner import save_artifacts

                order = match_order(self.modality.pairwise_cost(rec, truth)).to(self.device)
                rec = self.modality.select(rec, order)
                scores = {m.name: m(rec, truth).detach().cpu() for m in p.metrics}
                per = [{"index": i, **{k: float(v[i]) for k, v in scores.items()}} for i in range(len(truth))]
                for row in per:
                    row["success"] = bool(self.modality.is_success(row))
                outcome["metrics"].update({k: float(v.mean()) for k, v in scores.items()})
                outcome["per_sample"] = per
                outcome["success_rate"] = sum(r["success"] for r in per) / len(per)
                outcome["artifacts"] = save_artifacts(self.modality, [truth], [rec], art)
            else:
                art.mkdir(parents=True, exist_ok=True)
                outcome["artifacts"] = self.modality.save(rec, art, "recon")
            self._store(spec, outcome)

    def _spec(self, server_round: int, partition: int, attack: str, defense: str) -> dict[str, Any]:
        return {"key": f"{self.name}-r{server_round}-c{partition}-{attack}", "case": self.case_name, "attack": attack,
                "defenses": [defense], "seed": self.seed, "round": server_round, "client": partition,
                "params": {"round": server_round, "client": partition},
                "origin": f"flower round {server_round} client {partition}"}

    def _store(self, spec: dict[str, Any], outcome: dict[str, Any]) -> None:
        with self._lock:
            self.store.record(self.name, spec, self.modality.name, outcome)
            self.rows += 1
