"""CENSOR against inverting-gradients: PSNR with no defense vs CENSOR's three selection rules, and utility.

Part 1 (privacy): ``inverting-gradients`` (true labels known, the attack's own settings, ``--iterations``
Adam steps) on ``--images`` single photos of each ``--case``, under ``none``, ``censor`` (the paper's rule:
always the best orthogonal candidate), ``censor:selection=official`` (the official code's: keep the true
gradient unless a candidate beats the loss before the step) and ``censor:selection=true-step`` (unless a
candidate beats the loss after the true gradient's step). Every defense is attacked from the same start.

Part 2 (utility): FedSGD training of ``--utility-case``'s model (default ``vision/mlp``) from its
initialisation for ``--rounds`` rounds over the built-in private photos in batches of ``--train-batch`` (plain
SGD, ``--train-lr``), top-1 accuracy on the private set and on the public set (other crops of the same photos)
every ``--eval-every`` rounds. Each ``--utility-run SPEC@K`` defends every K-th round's update and leaves the
others clean: ``@1`` is a federation where every update is defended; ``@10``/``@100`` mimic the official
code's protocol, where only the attacked client's update is CENSOR'd and the model keeps training on clean
gradients (``run_rec.py``: one defended target step per epoch, then a full epoch of ordinary SGD).
``--rounds 0`` skips this part, ``--images 0`` the first.

    OMP_NUM_THREADS=1 python benchmarks/defenses/censor.py --case vision/mlp --images 3 --iterations 500 \\
        --rounds 0 --out benchmarks/defenses/results/censor_privacy.json
    OMP_NUM_THREADS=1 python benchmarks/defenses/censor.py --images 0 --rounds 1000 --utility-run none \\
        --utility-run censor@10 --utility-run censor@100 --out benchmarks/defenses/results/censor_utility.json
    OMP_NUM_THREADS=1 python benchmarks/defenses/censor.py --images 0 --rounds 200 --eval-every 50 \\
        --utility-run censor --utility-run censor:selection=official \\
        --out benchmarks/defenses/results/censor_utility_every_round.json
"""

from __future__ import annotations

import argparse
import json
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


def parse_run(text: str) -> tuple[str, int]:
    """``SPEC`` or ``SPEC@K``: the defense, applied to every K-th round (1: every round)."""
    spec, _, every = text.partition("@")
    return spec, int(every or 1)


def train_curve(case: str, spec: str, every: int, rounds: int, batch: int, lr: float, eval_every: int,
                seed: int = 0) -> dict:
    """FedSGD from the case's initialisation: round r trains on the next ``batch`` private samples with plain SGD
    (``lr``); the update is defended with ``spec`` on rounds ``r % every == 0`` and clean otherwise. Top-1
    accuracy on the public set and on the whole private set every ``eval_every`` rounds."""
    p = plan(case, "inverting-gradients", [spec], {}, "cpu", 1)
    cpu = torch.device("cpu")
    gen = generator(cpu, seed)
    model = p.case.build_model(gen)
    model.train(p.case.protocol.mode == "train")
    data = p.case.load_data(None)
    public = p.case.public_data()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    sent_true, curve = [], []

    def evaluate(r: int) -> dict[str, float]:
        with torch.no_grad():
            out = p.case.forward(model, public)
            train_out = p.case.forward(model, data)
        return {"round": r, "public_accuracy": float((out.argmax(-1) == public.labels).float().mean()),
                "public_loss": float(p.case.loss(out, public.labels)),
                "train_accuracy": float((train_out.argmax(-1) == data.labels).float().mean()),
                "train_loss": float(p.case.loss(train_out, data.labels))}

    for r in range(rounds):
        idx = order[torch.arange(r * batch, (r + 1) * batch) % len(data)]
        part = p.modality.select(data, idx)
        defenses = p.defenses if r % every == 0 else []
        _, clean, sent = client_update(model, p.case, p.modality, part, defenses, gen)
        if defenses:
            cost = defenses[0].utility_cost(clean, sent, ClientContext(model, p.case, p.modality, part))
            if "sent_true" in cost:
                sent_true.append(cost["sent_true"])
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.sub_(lr * sent.tensors[name])
        if (r + 1) % eval_every == 0 or r + 1 == rounds:
            curve.append(evaluate(r + 1))
    result = {**{k: v for k, v in curve[-1].items() if k != "round"}, "curve": curve,
              "defended_rounds": sum(1 for r in range(rounds) if r % every == 0) if spec != "none" else 0}
    if sent_true:
        result["sent_true_fraction"] = sum(sent_true) / len(sent_true)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", default=None)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--utility-case", default="vision/mlp",
                    help="case trained for the utility part (DLG's sigmoid LeNet does not learn with plain SGD)")
    ap.add_argument("--utility-run", action="append", default=None,
                    help="SPEC or SPEC@K (defend every K-th round only); default: none, censor, censor@10")
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--train-lr", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, action="append", default=None,
                    help="training seeds (model initialisation, data order, CENSOR's draws); default 0")
    ap.add_argument("--resume", type=Path, action="append", default=[],
                    help="earlier result JSON whose identical privacy rows are reused instead of rerun")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "censor.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = args.case or ["vision/mlp"]
    reuse = {}
    for path in args.resume:
        for row in json.loads(path.read_text()).get("privacy", []):
            reuse[(row["case"], row["budget"], tuple(row["defenses"]), row["index"])] = row | {"reused": True}
    payload = {"benchmark": "censor", "scale": vars(args) | {"out": str(args.out), "case": cases},
               "machine": machine(), "privacy": [], "utility": [], "summary": {}}
    for case in cases:
        for i in range(args.images):
            for spec in DEFENSES:
                row = reuse.get((case, args.iterations, (spec,), i)) or attack(
                    case, "inverting-gradients", [spec], i, args.iterations, sets={"labels": "known"})
                payload["privacy"].append(row)
                print(case, i, spec, {k: round(v, 2) for k, v in row["metrics"].items()},
                      round(row["attack_seconds"], 1), flush=True)
                write(args.out, payload)
        for spec in DEFENSES:
            values = [r["metrics"]["psnr"] for r in payload["privacy"] if r["case"] == case and r["defenses"] == [spec]]
            if not values:
                continue
            payload["summary"].setdefault(case, {})[spec] = {"psnr_mean": statistics.mean(values),
                                                             "psnr_min": min(values), "psnr_max": max(values)}
    for run in [] if args.rounds == 0 else args.utility_run or ["none", "censor", "censor@10"]:
        spec, every = parse_run(run)
        for seed in args.seed or [0]:
            start = time.perf_counter()
            acc = train_curve(args.utility_case, spec, every, args.rounds, args.train_batch, args.train_lr,
                              args.eval_every, seed)
            payload["utility"].append({"case": args.utility_case, "defense": spec, "defended_every": every,
                                       "seed": seed, **acc, "seconds": time.perf_counter() - start})
            print(args.utility_case, "utility", run, seed, {k: v for k, v in acc.items() if k != "curve"}, flush=True)
            write(args.out, payload)
    payload["machine"]["load_average_end"] = __import__("os").getloadavg()
    write(args.out, payload)


if __name__ == "__main__":
    main()
