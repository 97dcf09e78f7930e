"""Why CENSOR cannot train on its own: the trial losses of its orthogonal candidates against the true step.

On one FedSGD round of ``--case`` (``--batch`` private photos), the client's loss before any step, after the
true gradient's step and after each of ``--trials`` exactly orthogonal candidates (at the true norm) at the
official trial step ``1e-4`` and at the training rate ``--lr``. An orthogonal step leaves the loss unchanged
to first order, so the candidates can only differ by curvature.

    OMP_NUM_THREADS=1 python benchmarks/defenses/censor_trial_losses.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write  # noqa: E402

from gradleak.builtin.censor import orthogonal_direction  # noqa: E402
from gradleak.builtin.utility import client_loss, stepped  # noqa: E402
from gradleak.components import ClientContext  # noqa: E402
from gradleak.device import generator  # noqa: E402
from gradleak.fl.client import client_update  # noqa: E402
from gradleak.runner import plan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="vision/mlp")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "censor_trial_losses.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = plan(args.case, "inverting-gradients", ["none"], {}, "cpu", 1)
    gen = generator(torch.device("cpu"), 0)
    model = p.case.build_model(gen)
    model.train(p.case.protocol.mode == "train")
    part = p.modality.select(p.case.load_data(None), torch.arange(args.batch))
    _, clean, _ = client_update(model, p.case, p.modality, part, [], gen)
    context = ClientContext(model, p.case, p.modality, part)
    before = client_loss(context, {})
    rows = []
    for step in (1e-4, args.lr):
        true = client_loss(context, stepped(context, clean, step))
        losses = []
        for _ in range(args.trials):
            cand = clean.with_tensors({k: orthogonal_direction(t, gen) for k, t in clean.tensors.items()})
            losses.append(client_loss(context, stepped(context, cand, step)))
        rows.append({"step": step, "loss_before": before, "loss_true_step": true, "true_decrease": before - true,
                     "orthogonal_min": min(losses), "orthogonal_max": max(losses),
                     "best_orthogonal_decrease": before - min(losses), "distinct_losses": len(set(losses)),
                     "candidates_below_before": sum(v < before for v in losses)})
        print(rows[-1], flush=True)
    write(args.out, {"benchmark": "censor-trial-losses", "scale": vars(args) | {"out": str(args.out)},
                     "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
