"""A whole federation in Flower's simulation engine, under attack, on one machine."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from flwr.common import ndarrays_to_parameters

from .arrays import model_to_ndarrays
from .client import client_fn_for
from .server import AttackingStrategy


def simulate(case: str, attacks: Sequence[str], out: str | Path, clients: int = 3, rounds: int = 2,
             batch_size: int = 1, sets: Mapping[str, Any] | None = None,
             attack_sets: Mapping[str, Mapping[str, Any]] | None = None, budget: int | None = None,
             defenses: Mapping[int, Sequence[str]] | None = None, detectors: Sequence[str] = (),
             refuse_flagged: bool | Collection[int] = False, malicious: Mapping[int, str] | None = None,
             background: bool = False, seed: int = 0, name: str = "flower") -> Any:
    """Run a federation in Flower's simulation engine (FedAvg, every client every round) under attack.

    Clients train ``case`` with ``defenses`` (per partition id) and ``detectors`` (refusing flagged rounds
    where ``refuse_flagged`` says so) and write their batches to ``out/audit`` so reconstructions are scored;
    ``malicious`` maps partition ids to the active attack whose model they receive (and grants the threat
    model's ``malicious`` capability); ``background`` attacks in a worker thread while the rounds go on.
    Returns the results store's DataFrame.
    """
    from flwr.client import ClientApp
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    from ...config import config_fields
    from ...device import generator
    from ...registry import registry
    from ...runner import client_plan

    sets = {"protocol": "fedavg", "hyperparams": "known", **({"malicious": True} if malicious else {}), **dict(sets or {})}
    audit = Path(out) / "audit"
    client_sets = {k: v for k, v in sets.items() if k in config_fields(registry().get("case", case).Config)}
    setup = client_plan(case, sets=client_sets, device="cpu")
    initial = ndarrays_to_parameters(model_to_ndarrays(setup.case.build_model(generator(setup.device, seed))))
    inner = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients, min_available_clients=clients,
                   initial_parameters=initial)
    strategy = AttackingStrategy(inner, case, attacks, out, sets=sets, attack_sets=attack_sets, budget=budget,
                                 malicious=malicious, audit_dir=audit, background=background, name=name, seed=seed,
                                 device="cpu")
    client_fn = client_fn_for(case, clients, defenses, refuse_flagged, batch_size=batch_size, sets=client_sets,
                              detectors=tuple(detectors), audit_dir=str(audit), seed=seed)
    def server_fn(context: Any) -> ServerAppComponents:
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(server_app=ServerApp(server_fn=server_fn),
                   client_app=ClientApp(client_fn=client_fn), num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1},
                                   "init_args": {"include_dashboard": False, "num_cpus": clients}})
    strategy.wait()
    return strategy.store.frame()
