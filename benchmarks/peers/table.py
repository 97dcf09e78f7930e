"""Markdown table of ``benchmarks/peers/results/*.json`` (the README's numbers)::

    python benchmarks/peers/table.py [--tag -timing]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows(tag: str) -> list[str]:
    out = ["| configuration | iterations | threads | load | implementation | s/iteration | s/evaluation | speedup "
           "| PSNR dB | SSIM | attack memory MB |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((HERE / "results").glob(f"*{tag}.json")):
        if not tag and "-timing" in path.stem:
            continue
        r = json.loads(path.read_text())
        load = r["machine"].get("load_average_at_start", [float("nan")])[0]
        for name in [k for k in r if k.startswith("gradleak-")] + ["breaching"]:
            s = r[name]
            speed = r.get("ratios", {}).get(name, {}).get("speedup_per_iteration")
            out.append(f"| {r['config']} | {r['iterations']} | {r['machine']['threads']} | {load:.1f} | {name} "
                       f"| {s.get('seconds_per_iteration', float('nan')):.4f} "
                       f"| {s.get('seconds_per_evaluation', float('nan')):.4f} "
                       f"| {'' if speed is None else f'{speed:.2f}x'} | {s['psnr']:.2f} | {s['ssim']:.3f} "
                       f"| {s['attack_memory_mb']:.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="", help="file-name suffix of the run (e.g. -timing); empty: untagged runs")
    args = parser.parse_args()
    print("\n".join(rows(args.tag)))


if __name__ == "__main__":
    main()
