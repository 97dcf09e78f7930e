"""How much the first layer's gradient alone reveals, SNN vs ANN twin: a control for ``snn_vs_ann.py``.

For a first fully connected layer ``I[t] = W x[t] + b`` and one sample, the parameter gradient is
``dL/dW = sum_t delta[t] x[t]^T`` and ``dL/db = sum_t delta[t]`` whatever comes after the layer (LIF
neurons with any surrogate, or ReLU): row ``i`` gives ``dW[i] / db[i] = sum_t w_t x[t]`` with
``w_t = delta_t[i] / sum_t delta_t[i]`` (Geiping et al. 2020, Prop. D.1; Aksu et al. do not discuss it). With
direct encoding ``x[t] = x`` and the ratio is the digit itself, to float precision, for the SNN as much as
for its twin; with rate or latency encoding it is a weighted mixture of the spike frames. This script
measures the PSNR of that closed-form estimate (row with the largest ``|db[i]|``, clipped to [0, 1]) against
the digit, on the same cases, digits and initial weights as ``snn_vs_ann.py`` (the runner's model seed
``s * 1000003 + k``; the gradient of the case's own loss, i.e. the FedSGD update), so a gap found by the
optimisation attack can be read as the attack's difficulty rather than less information in the gradient.

    python benchmarks/snn/first_layer_leak.py --images 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "first_layer_leak.json"
CASES = ("snn/lif-mlp-digits", "snn/ann-twin-mlp-digits")
SURROGATES = ("fast-sigmoid", "atan", "straight-through")


def psnr(estimate, image) -> float:
    mse = float(((estimate.clamp(0.0, 1.0) - image) ** 2).mean())
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def closed_form(case: str, sets: dict, seeds: list[int], images: int) -> list[float]:
    import torch

    from gradleak.device import generator
    from gradleak.runner import plan

    p = plan(case, "inverting-gradients", sets=sets, device="cpu")
    data = p.case.load_data(None)
    from gradleak_snn.data import mnist_digits

    digits = mnist_digits()[0]
    out = []
    for seed in seeds:
        for k in range(images):
            truth = p.modality.select(data, torch.tensor([k]))
            model = p.case.build_model(generator(p.device, seed * 1_000_003 + k))
            loss = p.case.loss(p.case.forward(model, truth), truth.labels)
            gw, gb = torch.autograd.grad(loss, [model.fc1.weight, model.fc1.bias])
            i = gb.abs().argmax()
            out.append(psnr((gw[i] / gb[i]).view(1, 28, 28), digits[k]))
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    rows = []
    for steps in (10, 25):
        for encoding in ("direct", "rate", "latency"):
            ann = closed_form(CASES[1], {"encoding": encoding, "T": steps}, args.seeds, args.images)
            for surrogate in SURROGATES:
                snn = closed_form(CASES[0], {"encoding": encoding, "T": steps, "surrogate": surrogate,
                                             "output": "membrane"}, args.seeds, args.images)
                rows.append({"encoding": encoding, "surrogate": surrogate, "T": steps, "samples": len(snn),
                             "psnr_snn_mean": round(sum(snn) / len(snn), 2), "psnr_snn_min": round(min(snn), 2),
                             "psnr_ann_mean": round(sum(ann) / len(ann), 2), "psnr_ann_min": round(min(ann), 2)})
    summary = {"benchmark": "closed-form first-layer estimate dW1[i]/db1[i] (no optimisation), SNN vs ANN twin",
               "models": "lif-mlp-digits vs ann-twin-mlp-digits, same weights as snn_vs_ann.py",
               "images_per_seed": args.images, "seeds": args.seeds, "settings": rows}
    OUT.write_text(json.dumps(summary, indent=1) + "\n")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
