"""Label recovery from the last layer: iDLG at batch 1, GradInversion's (Yin et al.) restoration and the
count method of Wainakh et al. at larger batches, on every vision case with the built-in photo crops.

Reproduces: iDLG (Zhao et al. 2020) label accuracy 100% at batch 1; Yin et al. 2021 (GradInversion, Sec. 3.1)
exact restoration for batches without repeated labels. Only gradients are computed (no inversion), so the
full set of samples runs in minutes on a CPU.

    python benchmarks/vision/labels.py --samples 40 --tag cpu
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gradleak.engine import count_labels, idlg_label
from gradleak.fl.client import client_update
from gradleak.runner import plan
from gradleak.view import AttackerView
from gradleak_vision.optimization import yin_labels

CASES = {
    "vision/lenet": {},
    "vision/convnet": {"width": 16},
    "vision/resnet18": {"width": 16},
    "vision/preact-resnet": {"width": 16},
    "vision/vit-tiny": {"dim": 48, "depth": 2},
}


def recover(case: str, sets: dict, batch_size: int, samples: int, mode: str) -> dict[str, float]:
    p = plan(case, "idlg", sets={**sets, "mode": mode}, device="cpu")
    data = p.case.load_data(None)
    hits = {"idlg": 0, "yin": 0, "count": 0}
    total = 0
    for k in range(samples // batch_size):
        gen = torch.Generator().manual_seed(k)
        model = p.case.build_model(gen)
        model.train(mode == "train")
        truth = p.modality.select(data, torch.arange(k * batch_size, (k + 1) * batch_size))
        _, _, update = client_update(model, p.case, p.modality, truth, [], gen)
        view = AttackerView(model=model, loss=p.case.loss, forward=p.case.forward, modality=p.modality,
                            threat=p.case.threat_model, sample_shape=tuple(truth.data.shape[1:]),
                            num_classes=p.case.num_classes, batch_size=batch_size, generator=gen)
        truth_sorted = truth.labels.sort().values
        if batch_size == 1:
            hits["idlg"] += int(idlg_label(view, update).item() == truth.labels.item())
        hits["yin"] += int((yin_labels(view, update) == truth_sorted).sum())
        hits["count"] += int((count_labels(view, update) == truth_sorted).sum())
        total += batch_size
    return {k: v / total for k, v in hits.items() if not (k == "idlg" and batch_size > 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    for case, sets in CASES.items():
        for bs in (int(b) for b in args.batches.split(",")):
            for mode in ("eval", "train") if bs > 1 else ("eval",):
                start = time.perf_counter()
                acc = recover(case, sets, bs, args.samples, mode)
                row = {"case": case, "sets": sets, "batch_size": bs, "mode": mode, "label_accuracy": acc,
                       "seconds": round(time.perf_counter() - start, 1)}
                results.append(row)
                print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results" / f"labels-{args.tag}.json"
    out.write_text(json.dumps({
        "paper": {"idlg": "Zhao et al. 2020: 100% label accuracy at batch 1",
                  "yin": "Yin et al. 2021: exact for batches without repeated labels (ResNet-50, ImageNet)"},
        "scale": {"samples_per_setting": args.samples, "data": "built-in photo crops (distinct labels per batch)",
                  "models": "untrained, torch default init (LeNet: DLG's U(-0.5, 0.5))", "protocol": "fedsgd"},
        "results": results}, indent=1))


if __name__ == "__main__":
    main()
