"""RGIA vs rl-dlg on every RL case: batch 1, 4, 16; FedSGD and FedAvg; every transition metric.

Writes ``benchmarks/rl/results/rgia-<tag>.json`` after every run (so a cut-off benchmark keeps what it ran),
with the scale (iterations, restarts, seeds, FedAvg local steps) and per-case ratios rl-dlg / RGIA at batch 4
against the issue's goals (dynamics_err >= 5x lower, state_mse >= 2x lower; valid_frac >= 0.9 on classic
control). Runs go in priority order: batch 4 FedSGD, batch 4 FedAvg, batch 1, batch 16.

    python benchmarks/rl/rgia.py --cases rl/cartpole-dqn,rl/acrobot-dqn --tag classic --iterations 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import gradleak

CLASSIC = ["rl/cartpole-dqn", "rl/acrobot-dqn", "rl/pendulum-ddpg", "rl/mountaincar-ddpg"]
DRIVING = ["rl/highway-dqn", "rl/intersection-dqn", "rl/merge-dqn"]
ATTACKS = ["rl-dlg", "rgia"]


def grid(cases: list[str], batches: list[int], protocols: list[str]) -> list[tuple[str, int, str]]:
    """(case, batch, protocol) in priority order: batch 4 first (FedSGD then FedAvg), then the others."""
    first = [b for b in batches if b == 4] + [b for b in batches if b != 4]
    return [(c, b, p) for b in first for p in protocols for c in cases]


def summarise(runs: list[dict]) -> dict:
    """Per case and protocol at batch 4: rl-dlg / RGIA ratios and whether the issue's goals hold."""
    out: dict[str, dict] = {}
    for r in runs:
        if r["batch_size"] != 4 or r["attack"] != "rgia" or r["status"] != "ok":
            continue
        base = next((b for b in runs if b["case"] == r["case"] and b["batch_size"] == 4 and b["attack"] == "rl-dlg"
                     and b["protocol"] == r["protocol"] and b["seed"] == r["seed"] and b["status"] == "ok"), None)
        if base is None:
            continue
        ratio = lambda k: base["metrics"][k] / max(r["metrics"][k], 1e-12)  # noqa: E731
        key = f'{r["case"]}/{r["protocol"]}/seed{r["seed"]}'
        goals = {"dynamics_err_5x": ratio("dynamics_err") >= 5, "state_mse_2x": ratio("state_mse") >= 2}
        if r["case"] in CLASSIC:
            goals["valid_frac_0.9"] = r["metrics"]["valid_frac"] >= 0.9
        out[key] = {"dynamics_err_ratio": ratio("dynamics_err"), "state_mse_ratio": ratio("state_mse"),
                    "rgia_valid_frac": r["metrics"]["valid_frac"], "goals": goals}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=",".join(CLASSIC + DRIVING))
    ap.add_argument("--batches", default="4,1,16")
    ap.add_argument("--protocols", default="fedsgd,fedavg")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--iterations-16", type=int, default=None, help="iterations at batch 16 (default: --iterations)")
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--local-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="all")
    ap.add_argument("--rgia-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra --set for rgia only (e.g. warmup=0.5); repeatable")
    ap.add_argument("--note", default="", help="free text stored in the JSON's scale")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(__file__).parent / "results" / f"rgia-{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cases = args.cases.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: list[dict] = []
    scale = {"iterations": args.iterations, "iterations_batch16": args.iterations_16 or args.iterations,
             "restarts": args.restarts, "seeds": seeds, "fedavg_local_steps": args.local_steps, "fedavg_local_lr": 0.01,
             "torch_threads": args.threads, "machine": platform.machine(), "device": "cpu",
             "note": "one batch per run (the first --batch-size transitions of the client's rollout)",
             "rgia_sets": dict(kv.split("=", 1) for kv in args.rgia_set), "run_note": args.note}
    rgia_sets = {k: json.loads(v) if v[:1] in "0123456789-tf[{" else v
                 for k, v in (kv.split("=", 1) for kv in args.rgia_set)}
    for case, bs, protocol in grid(cases, batches, args.protocols.split(",")):
        for seed in seeds:
            for attack in ATTACKS:
                sets = {"protocol": protocol, "restarts": args.restarts, **(rgia_sets if attack == "rgia" else {})}
                if protocol == "fedavg":
                    sets["local_steps"] = args.local_steps
                budget = args.iterations_16 if (bs == 16 and args.iterations_16) else args.iterations
                row = {"case": case, "attack": attack, "batch_size": bs, "protocol": protocol, "seed": seed,
                       "iterations": budget}
                start = time.perf_counter()
                try:
                    r = gradleak.run(case, attack, batch_size=bs, seed=seed, device="cpu", budget=budget, sets=sets)
                    row.update(status="ok", metrics=r.metrics, seconds=round(r.seconds, 2))
                except Exception as exc:  # record and go on: a benchmark row per cell
                    row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                row["wall_seconds"] = round(time.perf_counter() - start, 2)
                runs.append(row)
                out.write_text(json.dumps({"benchmark": "rl/rgia", "scale": scale, "summary_batch4": summarise(runs),
                                           "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
