"""Selective encryption: attack PSNR against the encrypted ratio, per significance metric and attacker, with HE cost.

Part 1 (privacy): ``--attack`` (default ``idlg``: DLG's L-BFGS gradient matching with iDLG's label recovery,
``--budget`` steps, one restart) on one photo of ``--case``, under ``selective-encryption:ratio=R,metric=M,
attacker=A`` for every ratio, metric and attacker (``masked``: matches the plaintext coordinates only;
``naive``: takes the encrypted ones as zeros), plus ``none``. Every configuration is attacked from the same
start. Reported per metric: the smallest ratio keeping the masked attacker below 15 dB (among those run).

Part 2 (overhead): ``he_seconds`` and ``he_bytes`` of the client's CKKS encryption at each ratio against full
encryption (ratio 1), for each case in ``--he-case`` (no attack).

    OMP_NUM_THREADS=1 python benchmarks/defenses/selective_encryption.py --budget 100 --ratios 0.01,0.1,0.3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import attack, machine, write  # noqa: E402

from gradleak.builtin.encryption import SelectiveEncryption  # noqa: E402
from gradleak.components import ClientContext  # noqa: E402
from gradleak.config import make_config  # noqa: E402
from gradleak.device import generator  # noqa: E402
from gradleak.fl.client import client_update  # noqa: E402
from gradleak.runner import plan  # noqa: E402

METRICS = ["magnitude", "sensitivity", "layer", "random", "distance"]


def overhead(case: str, ratios: list[float]) -> list[dict]:
    p = plan(case, "tag" if case.startswith("text/") else "idlg", ["none"], {}, "cpu", 1)
    gen = generator(torch.device("cpu"), 0)
    model = p.case.build_model(gen)
    model.eval()
    truth = p.modality.select(p.case.load_data(None), torch.arange(1))
    batch, clean, _ = client_update(model, p.case, p.modality, truth, [], gen)
    context = ClientContext(model, p.case, p.modality, batch)
    rows = []
    for ratio in ratios:
        d = SelectiveEncryption(make_config(SelectiveEncryption.Config, {"ratio": ratio}, "selective-encryption"))
        sent = d.apply_update(clean, gen, context)
        cost = d.utility_cost(clean, sent, context)
        rows.append({"case": case, "ratio": ratio, "parameters": sum(t.numel() for t in clean.tensors.values()),
                     **{k: cost[k] for k in ("he_seconds", "he_bytes", "he_bytes_full", "encrypted_fraction",
                                             "update_distortion")}})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="vision/lenet")
    ap.add_argument("--attack", default="idlg")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--ratios", default="0.01,0.1,0.3")
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--he-case", action="append", default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "selective_encryption.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ratios = [float(r) for r in args.ratios.split(",")]
    metrics = args.metrics.split(",")
    payload = {"benchmark": "selective-encryption", "scale": vars(args) | {"out": str(args.out)},
               "machine": machine(), "privacy": [], "overhead": [], "smallest_ratio_below_15db": {}}
    for case in args.he_case or [args.case]:
        payload["overhead"].extend(overhead(case, sorted(set(ratios + [1.0]))))
        write(args.out, payload)
    baseline = attack(args.case, args.attack, ["none"], 0, args.budget)
    payload["privacy"].append(baseline | {"ratio": 0.0, "metric": None, "attacker": None})
    print("none", baseline["metrics"], flush=True)
    for metric in metrics:
        for ratio in ratios:
            for who in ("masked", "naive"):
                spec = f"selective-encryption:ratio={ratio},metric={metric},attacker={who}"
                row = attack(args.case, args.attack, [spec], 0, args.budget)
                payload["privacy"].append(row | {"ratio": ratio, "metric": metric, "attacker": who})
                print(metric, ratio, who, {k: round(v, 2) for k, v in row["metrics"].items()},
                      round(row["attack_seconds"], 1), flush=True)
                write(args.out, payload)
        below = [r["ratio"] for r in payload["privacy"]
                 if r["metric"] == metric and r["attacker"] == "masked" and r["metrics"]["psnr"] < 15.0]
        payload["smallest_ratio_below_15db"][metric] = min(below) if below else None
        write(args.out, payload)
    payload["machine"]["load_average_end"] = __import__("os").getloadavg()
    write(args.out, payload)


if __name__ == "__main__":
    main()
