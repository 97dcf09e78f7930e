"""The feasibility map of Valadi et al. ("From Research to Reality", 2025) at CPU scale.

Grid: client mode (train, eval) x normalization position (pre-, post-activation) x skip connections (on, off)
x width, on ``vision/preact-resnet`` (shallow: ``--stages`` stages of ``--depth`` blocks) with the built-in
photo crops, labels known, FedSGD, after ``--pretrain-steps`` SGD steps on the public crops (an untrained
model's BatchNorm is the identity in eval mode, which would make pre- and post-activation nets the same function). Eval-mode clients are attacked with ``inverting-gradients``; train-mode
clients with ``gia-running`` (their best training-mode attack: BN batch statistics recovered from the running
buffers) and, for reference, ``inverting-gradients`` (whose candidate update already uses the candidates' own
batch statistics). The paper's ordering: eval-mode clients leak far more than train-mode ones, and
train-mode leakage needs shallow, wide, pre-activation-normalized models with skips.

Writes ``benchmarks/vision/results/feasibility-<tag>.json`` after every run (so a cut-off benchmark keeps what
it ran) with the scale, every run's metrics, mean PSNR per cell and the ordering checks.

    python benchmarks/vision/feasibility.py --widths 8,32 --iterations 400 --batch-size 4 --tag cpu
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import gradleak

RESULTS = Path(__file__).parent / "results"

PAPER = ("Valadi et al. 2025, abstract and feasibility figures: inference (eval) mode makes inversion far easier; "
         "in training mode attacks succeed only on shallow, wide models with skip connections and "
         "pre-activation normalization")


def cells(widths: list[int], train_attacks: list[str]) -> list[dict]:
    out = []
    for mode, norm, skips, width in itertools.product(("eval", "train"), ("pre", "post"), (True, False), widths):
        attacks = ["inverting-gradients"] if mode == "eval" else train_attacks
        for attack in attacks:
            out.append({"mode": mode, "norm": norm, "skips": skips, "width": width, "attack": attack})
    return out


def mean_psnr(runs: list[dict], **where) -> float | None:
    values = [r["metrics"]["psnr"] for r in runs
              if r["status"] == "ok" and all(r["cell"][k] == v for k, v in where.items())]
    return statistics.fmean(values) if values else None


def summarise(runs: list[dict], widths: list[int]) -> dict:
    wide, narrow = max(widths), min(widths)
    best_train = mean_psnr(runs, mode="train", attack="gia-running", norm="pre", skips=True, width=wide)
    others = [mean_psnr(runs, mode="train", attack="gia-running", norm=n, skips=s, width=w)
              for n, s, w in itertools.product(("pre", "post"), (True, False), widths)
              if (n, s, w) != ("pre", True, wide)]
    others = [v for v in others if v is not None]
    eval_ig = mean_psnr(runs, mode="eval", attack="inverting-gradients")
    train_means = [v for v in (mean_psnr(runs, mode="train", attack="gia-running"),
                               mean_psnr(runs, mode="train", attack="inverting-gradients")) if v is not None]
    train_best_attack = max(train_means) if train_means else None
    return {
        "mean_psnr_eval": eval_ig,
        "mean_psnr_train_gia_running": mean_psnr(runs, mode="train", attack="gia-running"),
        "mean_psnr_train_inverting_gradients": mean_psnr(runs, mode="train", attack="inverting-gradients"),
        "train_pre_skips_wide": best_train,
        "train_other_cells_max": max(others) if others else None,
        "checks": {
            "eval_leaks_more_than_train": (eval_ig is not None and train_best_attack is not None
                                           and eval_ig > train_best_attack),
            "train_best_cell_is_pre_skips_wide": (best_train is not None and bool(others)
                                                  and best_train >= max(others)),
            "train_wide_beats_narrow": (lambda a, b: a is not None and b is not None and a > b)(
                mean_psnr(runs, mode="train", attack="gia-running", width=wide),
                mean_psnr(runs, mode="train", attack="gia-running", width=narrow)),
            "train_pre_beats_post": (lambda a, b: a is not None and b is not None and a > b)(
                mean_psnr(runs, mode="train", attack="gia-running", norm="pre"),
                mean_psnr(runs, mode="train", attack="gia-running", norm="post")),
            "train_skips_beat_no_skips": (lambda a, b: a is not None and b is not None and a > b)(
                mean_psnr(runs, mode="train", attack="gia-running", skips=True),
                mean_psnr(runs, mode="train", attack="gia-running", skips=False)),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="8,32")
    ap.add_argument("--depth", type=int, default=1, help="blocks per stage")
    ap.add_argument("--stages", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pretrain-steps", type=int, default=20,
                    help="SGD steps on public crops first, so that BN running statistics are not the identity")
    ap.add_argument("--train-attacks", default="gia-running,inverting-gradients")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--merge", nargs="+", metavar="TAG",
                    help="only merge the runs of these tags (e.g. one per seed, run in parallel) into --tag")
    ap.add_argument("--table", action="store_true", help="only print the README's Markdown table of --tag")
    args = ap.parse_args()
    if args.table:
        done = json.loads((RESULTS / f"feasibility-{args.tag}.json").read_text())
        print(table(done["runs"], done["scale"]["widths"]))
        return
    if args.merge:
        merge(args.merge, args.tag)
        return
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    scale = {"case": "vision/preact-resnet", "depth": args.depth, "stages": args.stages, "widths": widths,
             "batch_size": args.batch_size, "batches": args.batches, "iterations": args.iterations, "seeds": seeds,
             "labels": "known", "protocol": "fedsgd", "pretrain_steps": args.pretrain_steps, "data": "built-in photo crops", "device": "cpu",
             "threads": args.threads, "train_attacks": args.train_attacks, "machine": platform.machine()}
    runs: list[dict] = []
    for seed in seeds:
        for cell in cells(widths, args.train_attacks.split(",")):
            sets = {"mode": cell["mode"], "norm": cell["norm"], "skips": cell["skips"], "width": cell["width"],
                    "depth": args.depth, "stages": args.stages, "labels": "known",
                    "pretrain_steps": args.pretrain_steps}
            start = time.perf_counter()
            try:
                r = gradleak.run("vision/preact-resnet", cell["attack"], device="cpu", seed=seed,
                                 budget=args.iterations, batch_size=args.batch_size, batches=args.batches, sets=sets)
                row = {"cell": cell, "seed": seed, "status": "ok", "metrics": r.metrics}
            except Exception as exc:  # recorded, never dropped: a benchmark keeps going
                row = {"cell": cell, "seed": seed, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            row["seconds"] = round(time.perf_counter() - start, 1)
            runs.append(row)
            print(json.dumps(row), flush=True)
            write(args.tag, scale, runs)
    print(json.dumps(summarise(runs, widths), indent=1))


def table(runs: list[dict], widths: list[int]) -> str:
    """Mean PSNR (dB, over seeds) per mode, width and attack (rows) and normalization x skips (columns)."""
    cols = [("pre", True), ("pre", False), ("post", True), ("post", False)]
    lines = ["| mode | attack | " + " | ".join(f"{n}, {'skips' if k else 'no skips'}" for n, k in cols) + " |",
             "|---" * (len(cols) + 2) + "|"]
    attacks = sorted({r["cell"]["attack"] for r in runs if r["cell"]["mode"] == "train"})
    for mode, attack in [("eval", "inverting-gradients")] + [("train", a) for a in attacks]:
        for w in widths:
            cells = [mean_psnr(runs, mode=mode, attack=attack, norm=n, skips=k, width=w) for n, k in cols]
            shown = ["-" if v is None else f"{v:.1f}" for v in cells]
            lines.append(f"| {mode}, width {w} | {attack} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def write(tag: str, scale: dict, runs: list[dict]) -> dict:
    """``results/feasibility-<tag>.json`` with the runs and their checks; returns the summary."""
    summary = summarise(runs, scale["widths"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"feasibility-{tag}.json").write_text(json.dumps({"paper": PAPER, "scale": scale, "runs": runs,
                                                                 "summary": summary}, indent=1))
    return summary


def merge(tags: list[str], tag: str) -> None:
    """One results file from several (the same grid and scale, other seeds), with the checks over all runs."""
    parts = [json.loads((RESULTS / f"feasibility-{t}.json").read_text()) for t in tags]
    scale = {**parts[0]["scale"], "seeds": sorted({s for p in parts for s in p["scale"]["seeds"]}), "merged_from": tags}
    print(json.dumps(write(tag, scale, [r for p in parts for r in p["runs"]]), indent=1))


if __name__ == "__main__":
    main()
