"""Markdown tables of ``benchmarks/rl/results/rgia-*.json``: RGIA vs rl-dlg on every metric, and the goals.

    python benchmarks/rl/table.py benchmarks/rl/results/rgia-classic.json benchmarks/rl/results/rgia-driving.json \
        benchmarks/rl/results/rgia-b4-*.json

A run of a later file replaces the run of an earlier file with the same case, batch, protocol, attack and seed
(reruns with newer code); the ``from`` column names the file each row comes from (``rgia-<tag>.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ["state_mse", "next_state_mse", "action_acc", "action_mse", "reward_mae", "dynamics_err", "valid_frac"]
CLASSIC = {"rl/cartpole-dqn", "rl/acrobot-dqn", "rl/pendulum-ddpg", "rl/mountaincar-ddpg"}


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def table(runs: list[dict]) -> str:
    lines = ["| case | batch | protocol | attack | " + " | ".join(METRICS) + " | s/run | from |",
             "|" + "---|" * (len(METRICS) + 6)]
    key = lambda r: (r["case"], r["batch_size"], r["protocol"], r["attack"])  # noqa: E731
    for r in sorted(runs, key=key):
        cells = [fmt(r["metrics"][m]) for m in METRICS] if r["status"] == "ok" else [r["status"]] * len(METRICS)
        lines.append(f'| {r["case"]} | {r["batch_size"]} | {r["protocol"]} | {r["attack"]} | ' + " | ".join(cells)
                     + f' | {r.get("seconds", r.get("wall_seconds", ""))} | {r.get("source", "")} |')
    return "\n".join(lines)


def goals(runs: list[dict]) -> str:
    """Per case and protocol at batch 4: rl-dlg / RGIA ratios of dynamics_err and state_mse, RGIA's valid_frac."""
    lines = ["| case | protocol | dynamics_err ratio (goal >= 5) | state_mse ratio (goal >= 2) | RGIA valid_frac "
             "(goal >= 0.9, classic) | all goals |", "|---|---|---|---|---|---|"]
    ok = {(r["case"], r["batch_size"], r["protocol"], r["attack"]): r for r in runs if r["status"] == "ok"}
    for (case, bs, protocol, attack), r in sorted(ok.items()):
        base = ok.get((case, bs, protocol, "rl-dlg"))
        if bs != 4 or attack != "rgia" or base is None:
            continue
        d = base["metrics"]["dynamics_err"] / max(r["metrics"]["dynamics_err"], 1e-12)
        s = base["metrics"]["state_mse"] / max(r["metrics"]["state_mse"], 1e-12)
        v = r["metrics"]["valid_frac"]
        met = d >= 5 and s >= 2 and (v >= 0.9 or case not in CLASSIC)
        lines.append(f"| {case} | {protocol} | {fmt(d)} | {fmt(s)} | {fmt(v)} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def load(paths: list[str]) -> list[dict]:
    """The runs of ``paths`` in order; a later file's run replaces an earlier one with the same key."""
    runs: dict[tuple, dict] = {}
    for path in paths:
        tag = Path(path).stem.removeprefix("rgia-")
        for r in json.loads(Path(path).read_text())["runs"]:
            runs[(r["case"], r["batch_size"], r["protocol"], r["attack"], r["seed"])] = {**r, "source": tag}
    return list(runs.values())


def main() -> None:
    runs = load(sys.argv[1:])
    print("### Goals at batch 4\n\n" + goals(runs) + "\n\n### Every run\n\n" + table(runs))


if __name__ == "__main__":
    main()
