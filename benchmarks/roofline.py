"""How close an attack iteration comes to the machine: achieved FLOP/s of ``inverting-gradients`` iterations
against a large matrix product on the same device, threads and dtype.

FLOPs of one iteration are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the engine's real code
path (``gradleak.engine.invert``: forward, the parameter gradient through ``torch.func``, the gradient-matching
objective and its backward to the input, i.e. the double backward): the count of a run with two iterations minus
that of a run with one, so setup and the final evaluation cancel. FlopCounterMode counts matrix products and
convolutions (2 FLOPs per multiply-add) and ignores elementwise work, so the ratio is that of the arithmetic
that could run at matmul speed. Time per iteration is the marginal time of ``--iterations`` iterations over a run
of zero iterations (best of ``--repeats``). The reference is the best of several ``n x n`` fp32 matmuls
(``2 n^3`` FLOPs each). Writes JSON to ``--out``::

    python benchmarks/roofline.py --threads 2 --cases convnet --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine  # noqa: E402  (benchmarks/engine.py: the IG problem on a case)

from gradleak.device import resolve_device  # noqa: E402
from gradleak.engine import functional, invert  # noqa: E402

def _inversefed(model: torch.nn.Module) -> torch.nn.Module:
    """gradleak's seeded ConvNet parameters in the inversefed/breaching layout (pool after the 6th layer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
    from models import InverseFedConvNet

    out = InverseFedConvNet(width=64, num_classes=model.fc.out_features)
    with torch.no_grad():
        for a, b in zip(out.parameters(), model.parameters(), strict=True):
            a.copy_(b)
    return out.train(model.training)


#: name -> (case, case settings, model swap). ``convnet-inversefed`` is breaching's ConvNet-64 (see peers/models.py).
CASES = {"lenet": ("vision/lenet", {}, None), "convnet": ("vision/convnet", {"width": 64, "mode": "eval"}, None),
         "convnet-inversefed": ("vision/convnet", {"width": 64, "mode": "eval"}, _inversefed),
         "resnet18": ("vision/resnet18", {"mode": "eval"}, None)}


def matmul_flops(device: str, n: int, repeats: int, dtype: torch.dtype = torch.float32) -> dict:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    times = [engine.timed(device, lambda: a @ b) for _ in range(repeats)]
    best = min(times)
    return {"n": n, "dtype": str(dtype), "seconds": best, "flops": 2 * n**3, "flop_per_second": 2 * n**3 / best}


def iteration(device: str, case: str, batch_size: int, iterations: int, repeats: int, precision: str = "fp32",
              **settings_overrides) -> dict:
    name, sets, swap = CASES[case]
    previous = functional.accelerate(precision=precision)
    view, update, labels, priors, config = engine.problem(device, batch_size, name, sets, swap)

    def run(n: int) -> None:
        s = engine.settings(config, n, 1)
        if settings_overrides:
            from dataclasses import replace
            s = replace(s, **settings_overrides)
        invert(view, update, s, labels=labels, priors=priors)

    counts = []
    for n in (1, 2):
        counter = FlopCounterMode(display=False)
        with counter:
            run(n)
        counts.append(counter.get_total_flops())
    flops = counts[1] - counts[0]
    run(2)  # warm-up (and compilation, when enabled)
    full = min(engine.timed(device, lambda: run(iterations)) for _ in range(repeats))
    setup = min(engine.timed(device, lambda: run(0)) for _ in range(repeats))
    per_iteration = max(full - setup, 1e-12) / iterations
    functional.accelerate(precision=previous.precision)
    return {"case": name if swap is None else f"{name} ({case})", "batch_size": batch_size, "precision": precision, "iterations": iterations,
            "flops_per_iteration": flops,
            "seconds_per_iteration": per_iteration, "flop_per_second": flops / per_iteration,
            "settings": {k: str(v) for k, v in settings_overrides.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cases", default="lenet,convnet,resnet18", help="comma-separated: lenet, convnet, convnet-inversefed, resnet18")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--precisions", default="fp32",
                        help="comma-separated engine precisions (fp32, bf16); each is compared with the fp32 matmul "
                             "and, for bf16, also with a bf16 matmul")
    parser.add_argument("--out", default="benchmarks/results/roofline.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    precisions = args.precisions.split(",")
    ref = matmul_flops(device, args.matmul_n, max(args.repeats, 5))
    ref_bf16 = matmul_flops(device, args.matmul_n, max(args.repeats, 5), torch.bfloat16) if "bf16" in precisions \
        else None
    rows = []
    for case in args.cases.split(","):
        for b in (int(v) for v in args.batch_sizes.split(",")):
            for precision in precisions:
                row = iteration(device, case, b, args.iterations, args.repeats, precision)
                row["fraction_of_matmul"] = row["flop_per_second"] / ref["flop_per_second"]
                if precision == "bf16" and ref_bf16 is not None:
                    row["fraction_of_bf16_matmul"] = row["flop_per_second"] / ref_bf16["flop_per_second"]
                rows.append(row)
                print(f"{row['case']:18s} batch {b} {precision}: {row['flops_per_iteration'] / 1e9:8.3f} GFLOP/it "
                      f"{row['seconds_per_iteration']:8.4f} s/it {row['flop_per_second'] / 1e9:7.1f} GFLOP/s "
                      f"= {100 * row['fraction_of_matmul']:5.1f}% of fp32 matmul", flush=True)
    ref_after = matmul_flops(device, args.matmul_n, max(args.repeats, 5))
    report = {"benchmark": "roofline", "machine": engine.machine(device), "matmul": ref,
              "matmul_after": ref_after, "matmul_bf16": ref_bf16, "iterations": rows}
    print(f"matmul {args.matmul_n}: {ref['flop_per_second'] / 1e9:.1f} GFLOP/s "
          f"(after: {ref_after['flop_per_second'] / 1e9:.1f})")
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report["machine"]["platform"] = platform.platform()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
