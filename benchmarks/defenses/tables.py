"""Markdown tables of the defense benchmarks' result files (what README.md shows).

    python benchmarks/defenses/tables.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent))
from selective_encryption import smallest_ratios  # noqa: E402


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def censor_privacy(*names: str) -> None:
    rows = [r for n in names if (d := load(n)) for r in d["privacy"]]
    print("| case | IG iterations | image | none | censor | censor:selection=official | censor:selection=true-step |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted({(r["case"], r["budget"], r["index"]) for r in rows})
    for case, budget, index in keys:
        cells = []
        for spec in ["none", "censor", "censor:selection=official", "censor:selection=true-step"]:
            hit = [r for r in rows if (r["case"], r["budget"], r["index"]) == (case, budget, index) and r["defenses"] == [spec]]
            cells.append(f"{hit[0]['metrics']['psnr']:.2f}" if hit else "-")
        print(f"| {case} | {budget} | {index} | " + " | ".join(cells) + " |")
    for case, budget in sorted({k[:2] for k in keys}):
        cells = []
        for spec in ["none", "censor", "censor:selection=official", "censor:selection=true-step"]:
            v = [r["metrics"]["psnr"] for r in rows if (r["case"], r["budget"]) == (case, budget) and r["defenses"] == [spec]]
            cells.append(f"**{statistics.mean(v):.2f}**" if v else "-")
        print(f"| {case} | {budget} | mean | " + " | ".join(cells) + " |")
    print()


def late_mean(curve: list[dict], key: str) -> float:
    """Mean of ``key`` over the evaluations in the second half of training (the single-seed curve is noisy)."""
    last = curve[-1]["round"]
    values = [c[key] for c in curve if c["round"] > last / 2]
    return 100 * statistics.mean(values)


def censor_utility(*names: str) -> None:
    print("| run | seed | rounds | defended rounds | train acc. (final / late mean) | public acc. (final / late mean) "
          "| sent_true | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        d = load(name)
        if not d:
            continue
        for r in d["utility"]:
            run = r["defense"] + (f"@{r['defended_every']}" if r["defense"] != "none" else "")
            st = r.get("sent_true_fraction")
            c = r["curve"]
            print(f"| {run} | {r.get('seed', 0)} | {c[-1]['round']} | {r['defended_rounds']} | "
                  f"{100 * r['train_accuracy']:.1f} / {late_mean(c, 'train_accuracy'):.1f} | "
                  f"{100 * r['public_accuracy']:.1f} / {late_mean(c, 'public_accuracy'):.1f} | "
                  f"{'-' if st is None else f'{st:.2f}'} | {r['seconds']:.0f} |")
    groups: dict[tuple, list[dict]] = {}
    for name in names:
        for r in (load(name) or {}).get("utility", []):
            groups.setdefault((r["defense"], r["defended_every"], r["curve"][-1]["round"]), []).append(r)
    for (defense, every, rounds), rs in groups.items():
        if len(rs) > 1:
            run = defense + (f"@{every}" if defense != "none" else "")
            mean = lambda f: statistics.mean(f(r) for r in rs)  # noqa: E731
            print(f"| **{run}** | mean of {len(rs)} | {rounds} | {rs[0]['defended_rounds']} | "
                  f"**{mean(lambda r: 100 * r['train_accuracy']):.1f} / {mean(lambda r: late_mean(r['curve'], 'train_accuracy')):.1f}** | "
                  f"**{mean(lambda r: 100 * r['public_accuracy']):.1f} / {mean(lambda r: late_mean(r['curve'], 'public_accuracy')):.1f}** | | |")
    print()


def encryption(name: str, *extra: str) -> None:
    d = load(name)
    if not d:
        return
    rows = list(d["privacy"])
    seen = {tuple(r["defenses"]) for r in rows}
    for other in extra:  # further rows of the same case and budget (e.g. a check run)
        for r in (load(other) or {}).get("privacy", []):
            if tuple(r["defenses"]) not in seen:
                rows.append(r)
                seen.add(tuple(r["defenses"]))
    base = next(r for r in rows if r["defenses"] == ["none"])
    score = "psnr" if "psnr" in base["metrics"] else "rouge1"
    ratios = sorted({r["ratio"] for r in rows if r.get("metric")})
    print(f"{d['scale']['case']}, `{d['scale']['attack']}` budget {d['scale']['budget']}, {score} "
          f"(undefended {base['metrics'][score]:.3f}):\n")
    print("| metric | attacker | " + " | ".join(f"{x:g}" for x in ratios) + " |")
    print("|---|---|" + "---|" * len(ratios))
    for metric in ["magnitude", "sensitivity", "layer", "random", "distance"]:
        for who in ["masked", "naive"]:
            cells = []
            for ratio in ratios:
                hit = [r for r in rows if r.get("metric") == metric and r.get("attacker") == who and r["ratio"] == ratio]
                if not hit:
                    cells.append("-")
                elif "error" in hit[0]:
                    cells.append("fail" if hit[0]["error"].startswith("attack failed") else "n/a")
                else:
                    cells.append(f"{hit[0]['metrics'][score]:.2f}")
            if any(c != "-" for c in cells):
                print(f"| {metric} | {who} | " + " | ".join(cells) + " |")
    print(f"\nsmallest ratio: {json.dumps(smallest_ratios(rows))}\n")


def overhead(name: str) -> None:
    d = load(name)
    if not d:
        return
    print("| case | parameters | ratio | he_seconds | he_bytes (MB) | full: he_bytes (MB) | bytes / full |")
    print("|---|---|---|---|---|---|---|")
    for r in d["overhead"]:
        print(f"| {r['case']} | {r['parameters']} | {r['ratio']:g} | {r['he_seconds']:.2f} | {r['he_bytes'] / 1e6:.2f} | "
              f"{r['he_bytes_full'] / 1e6:.2f} | {r['he_bytes'] / r['he_bytes_full']:.3f} |")
    print()


if __name__ == "__main__":
    censor_privacy("censor_privacy.json", "censor_lenet.json")
    censor_utility("censor_utility.json", "censor_utility_seed1.json", "censor_utility_seed2.json",
                   "censor_utility_every_round.json")
    encryption("selective_encryption_image.json")
    encryption("selective_encryption_text.json")
    overhead("selective_encryption_overhead.json")
