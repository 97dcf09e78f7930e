"""CENSOR against inverting-gradients: PSNR with no defense vs CENSOR's three selection rules, and utility.

Part 1 (privacy): ``inverting-gradients`` (true labels known, the attack's own settings, ``--iterations``
Adam steps) on ``--images`` single photos of each ``--case``, under ``none``, ``censor`` (the paper's rule:
always the best orthogonal candidate), ``censor:selection=official`` (the official code's: keep the true
gradient unless a candidate beats the loss before the step) and ``censor:selection=true-step`` (unless a
candidate beats the loss after the true gradient's step). Every defense is attacked from the same start.

Part 2 (utility): FedSGD training of ``--utility-case``'s model from its initialisation for ``--rounds`` rounds over the
built-in private data in batches of ``--train-batch`` (SGD, ``--train-lr``), each round's update defended; top-1
accuracy on the case's public data (other crops of the same photos) after training, clean vs CENSOR.

    OMP_NUM_THREADS=1 python benchmarks/defenses/censor.py --images 3 --iterations 2000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import attack, machine, write  # noqa: E402

from gradleak.components import ClientContext  # noqa: E402
from gradleak.device import generator  # noqa: E402
from gradleak.fl.client import client_update  # noqa: E402
from gradleak.runner import plan  # noqa: E402

DEFENSES = ["none", "censor", "censor:selection=official", "censor:selection=true-step"]


def train_accuracy(case: str, spec: str, rounds: int, batch: int, lr: float, seed: int = 0) -> dict[str, float]:
    p = plan(case, "inverting-gradients", [spec], {}, "cpu", 1)
    cpu = torch.device("cpu")
    gen = generator(cpu, seed)
    model = p.case.build_model(gen)
    model.eval()
    data = p.case.load_data(None)
    public = p.case.public_data()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    sent_true = []
    for r in range(rounds):
        idx = order[torch.arange(r * batch, (r + 1) * batch) % len(data)]
        part = p.modality.select(data, idx)
        _, clean, sent = client_update(model, p.case, p.modality, part, p.defenses, gen)
        cost = p.defenses[0].utility_cost(clean, sent, ClientContext(model, p.case, p.modality, part))
        if "sent_true" in cost:
            sent_true.append(cost["sent_true"])
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.sub_(lr * sent.tensors[name])
    with torch.no_grad():
        out = p.case.forward(model, public)
        acc = float((out.argmax(-1) == public.labels).float().mean())
        loss = float(p.case.loss(out, public.labels))
        train_out = p.case.forward(model, data)
        train_acc = float((train_out.argmax(-1) == data.labels).float().mean())
    result = {"public_accuracy": acc, "public_loss": loss, "train_accuracy": train_acc}
    if sent_true:
        result["sent_true_fraction"] = sum(sent_true) / len(sent_true)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", default=None)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--utility-case", default="vision/mlp",
                    help="case trained for the utility part (DLG's sigmoid LeNet does not learn with plain SGD)")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-lr", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "censor.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = args.case or ["vision/lenet"]
    payload = {"benchmark": "censor", "scale": vars(args) | {"out": str(args.out), "case": cases},
               "machine": machine(), "privacy": [], "utility": [], "summary": {}}
    for case in cases:
        for i in range(args.images):
            for spec in DEFENSES:
                row = attack(case, "inverting-gradients", [spec], i, args.iterations, sets={"labels": "known"})
                payload["privacy"].append(row)
                print(case, i, spec, {k: round(v, 2) for k, v in row["metrics"].items()},
                      round(row["attack_seconds"], 1), flush=True)
                write(args.out, payload)
        for spec in DEFENSES:
            values = [r["metrics"]["psnr"] for r in payload["privacy"] if r["case"] == case and r["defenses"] == [spec]]
            payload["summary"].setdefault(case, {})[spec] = {"psnr_mean": statistics.mean(values),
                                                             "psnr_min": min(values), "psnr_max": max(values)}
    for spec in ["none", "censor", "censor:selection=official"]:
        start = time.perf_counter()
        acc = train_accuracy(args.utility_case, spec, args.rounds, args.train_batch, args.train_lr)
        payload["utility"].append({"case": args.utility_case, "defense": spec, **acc,
                                   "seconds": time.perf_counter() - start})
        print(args.utility_case, "utility", spec, acc, flush=True)
        write(args.out, payload)
    payload["machine"]["load_average_end"] = __import__("os").getloadavg()
    write(args.out, payload)


if __name__ == "__main__":
    main()
