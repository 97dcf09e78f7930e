"""The demo behind `make demo`: gradient inversion on the embedded offline photos, pictures saved.

Until the study runner lands this runs the vision attacks one after another on `vision/lenet`:
iDLG on one photo (labels recovered from the gradient), DLG on one photo (labels optimised jointly),
and Inverting Gradients on a batch of four (labels known), all with the papers' iteration budgets (iDLG with
two restarts instead of eight). It takes about five minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gradleak

RUNS = [
    ("idlg", {"batch_size": 1, "budget": 300, "sets": {"restarts": 2}}),
    ("dlg", {"batch_size": 1, "budget": 300, "sets": {}}),
    ("inverting-gradients", {"batch_size": 4, "budget": 24000, "sets": {"labels": "known"}}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-out", help="where pictures and arrays go")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = Path(args.out)
    print(f"gradleak {gradleak.__version__}: attacking vision/lenet on real photos (device {args.device})")
    rows = []
    for attack, kw in RUNS:
        print(f"  running {attack} (batch {kw['batch_size']}, budget {kw['budget']}) ...", flush=True)
        result = gradleak.run("vision/lenet", attack, device=args.device, out=out / attack, **kw)
        rows.append((attack, result))
    print()
    print(f"{'attack':22} {'PSNR dB':>8} {'SSIM':>6} {'labels':>7} {'seconds':>8}  picture")
    for attack, r in rows:
        m = r.metrics
        print(f"{attack:22} {m['psnr']:8.2f} {m['ssim']:6.3f} {m['label_acc']:7.2f} {r.seconds:8.1f}  {r.artifacts['grid']}")
    print(f"\nPictures (truth on top, reconstruction below) and arrays are in {out.resolve()}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
