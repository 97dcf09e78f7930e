"""Exact attacks on vision/mlp and vision/lenet, beside the papers' figures (issue 3).

    .venv/bin/python benchmarks/vision/analytic.py [--batches 4] [--only spear [--sizes 8]]

Writes benchmarks/vision/results/analytic.json (``--only ATTACK`` reruns that attack's rows and keeps the
others). Private data: the built-in photo crops (class-interleaved) and the held-out photos (Grace Hopper crops
and LFW faces), fed like a user's ``--data``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import gradleak
from gradleak_vision.data import held_out_photos

PAPERS = {
    "analytic-fc": "Phong et al. 2018 / Geiping et al. 2020 Prop. 3.1: exact for one sample",
    "spear": "Dimitrov et al. 2024: exact (PSNR far above 60 dB) batches up to b ~ 25 on FC ReLU nets of width "
             "200-2000 (ImageNet); issue goal: PSNR >= 60 dB for b <= 8 on vision/mlp",
    "rgap": "Zhu & Blaschko 2021: R-GAP on CNN6/CIFAR-10 batch 1, PSNR 49.01 dB, SSIM 0.98 (breaching notebook)",
}


def summarize(result) -> dict:
    ok = [r for r in result.per_sample if r["status"] == "ok"]
    ps = [r["psnr"] for r in ok]
    return {"images": len(result.per_sample), "failed": result.failed, "psnr_mean": float(np.mean(ps)) if ps else None,
            "psnr_min": float(np.min(ps)) if ps else None, "exact_frac": sum(p >= 60 for p in ps) / len(result.per_sample),
            "label_acc": result.metrics.get("label_acc"), "seconds": round(result.seconds, 2),
            "failures": {s: sum(r["status"] == s for r in result.per_sample)
                         for s in sorted({r["status"] for r in result.per_sample} - {"ok"})}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--only", help="rerun only this attack's rows, keeping the other rows of --out")
    ap.add_argument("--sizes", type=int, nargs="*", help="with --only: rerun only these batch sizes")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "analytic.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    np.save(tmp / "held_out.npy", held_out_photos().data.numpy())
    sources = {"photo-crops": None, "held-out": str(tmp / "held_out.npy")}
    runs = [("vision/mlp", "analytic-fc", 1), ("vision/mlp", "analytic-fc", 4), ("vision/mlp", "rgap", 1),
            ("vision/lenet", "rgap", 1)] + [("vision/mlp", "spear", b) for b in (1, 2, 4, 8)]
    if args.only:
        runs = [r for r in runs if r[1] == args.only and (not args.sizes or r[2] in args.sizes)]
    rows = []
    start = time.time()
    for case, attack, bs in runs:
        for name, data in sources.items():
            available = 16 // bs if name == "held-out" else 160 // bs
            k = max(1, min(args.batches, available))
            if case == "vision/lenet" and attack == "rgap":
                k = min(k, 2)
            result = gradleak.run(case, attack, data=data if data else None, batch_size=bs, batches=k, device="cpu",
                                  seed=0) if data else _builtin(case, attack, bs, k)
            rows.append({"case": case, "attack": attack, "batch_size": bs, "data": name, "batches": k,
                         **summarize(result)})
            print(json.dumps(rows[-1]), flush=True)
    scale = {"batches_per_setting": args.batches, "threads": 1, "device": "cpu"}
    out = {"scale": scale, "paper": PAPERS, "seconds": round(time.time() - start, 1), "rows": rows}
    if args.only and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        redone = {(r["attack"], r["batch_size"]) for r in rows}
        kept = [r for r in old["rows"] if (r["attack"], r["batch_size"]) not in redone]
        out = {**old, "paper": PAPERS, "rows": kept + rows,
               "scale_by_attack": {**old.get("scale_by_attack", {}),
                                   args.only: {**scale, "batch_sizes": args.sizes or "all", "seconds": out["seconds"]}}}
    Path(args.out).write_text(json.dumps(out, indent=1))


def _builtin(case: str, attack: str, bs: int, k: int):
    """The built-in crops: ``k`` consecutive batches (the runner takes one by default), one run per batch seed."""
    import tempfile

    from gradleak_vision.data import photo_crops

    path = Path(tempfile.mkdtemp()) / "crops.npy"
    np.save(path, photo_crops().data.numpy()[: bs * k])
    return gradleak.run(case, attack, data=str(path), batch_size=bs, batches=k, device="cpu", seed=0)


if __name__ == "__main__":
    main()
