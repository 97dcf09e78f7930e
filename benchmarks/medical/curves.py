"""Utility-privacy curves on the offline biomedical patches: latent-perturbation vs DP-SGD vs no defense.

Jiang, Firouzi, Chakrabarty (learnable latent perturbation) report, at about 90% client accuracy, 12.5% lower
attacker accuracy and 12.4% higher MSE than DP-SGD and BiDO. This benchmark traces both defenses' curves on
``medical/cnn-patches`` (the small sigmoid CNN, 64-dim code, real CT/MR/ultrasound/microscopy tiles):

1. **Utility.** For every setting of a defense's knob, the case's model is trained from its initialisation
   by FedSGD over the private patches: ``--rounds`` rounds, each on ``--train-batch`` patches (a fixed
   shuffled order), the round's update computed by ``client_update`` under the defense (so DP-SGD clips and
   noises every example, latent-perturbation trains through its learned noise), applied by the server with
   Adam (``--train-lr``). Utility is the top-1 accuracy on the held-out public patches (other tiles of the same
   images) of the model as the client runs it: with its latent noise for latent-perturbation (mean of
   ``--noise-draws`` draws); the noise-free accuracy is reported beside it.
2. **Privacy.** The trained model is then attacked: ``inverting-gradients`` (labels known, ``--iterations``
   Adam steps, one restart) on the update of one private patch, for ``--images`` patches one per class, each
   defense attacked from the same start. Metrics on the reconstructions: ``mse``, ``psnr``, ``ssim`` and
   ``attacker_acc`` (a random forest fitted on clean public patches labels the reconstruction).

Knobs swept: latent-perturbation's ``privacy`` (lambda); DP-SGD's noise multiplier ``sigma`` at ``clip=1`` and
one setting at ``clip=0.1``. ``--quick`` runs a tiny version for a smoke test.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/medical/curves.py > benchmarks/medical/results/curves.log
    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/medical/curves.py --seed 1 > .../curves-seed1.log
    .venv/bin/python benchmarks/medical/curves.py --summarize   # results/curves-seed*.json -> results/curves.json/.png

Each seed (model initialisation, data order, defense noise) writes ``results/curves-seed<N>.json``;
``--summarize`` averages every setting over the seeds run (per-image rows are kept), compares latent-perturbation
with DP-SGD at equal utility, draws ``results/curves.png`` and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import gradleak
from gradleak.device import generator
from gradleak.matching import match_order
from gradleak.registry import registry
from gradleak.runner import plan
from gradleak_medical.federation import attack_update, train_fedsgd
from gradleak_medical.latent import PerturbedClassifier, accuracy, latent_std

CASE = "medical/cnn-patches"
ATTACK = "inverting-gradients"
METRICS = ("mse", "psnr", "ssim", "attacker_acc")
DEFENSES = {
    "none": ["none"],
    "latent-perturbation": [f"latent-perturbation:privacy={lam}" for lam in (1, 10, 30, 100, 300, 1000)],
    "dp-sgd": [f"dp-sgd:sigma={s}" for s in (0.0003, 0.001, 0.003, 0.01, 0.1, 1)] + ["dp-sgd:clip=0.1,sigma=0.01"],
}
RESULTS = Path(__file__).parent / "results"


def family(spec: str) -> str:
    return spec.split(":")[0]


def client_accuracy(model: torch.nn.Module, defense: Any, public: gradleak.Batch, draws: int) -> tuple[float, float]:
    """(accuracy as the client runs the model, noise-free accuracy) on ``public``."""
    clean = accuracy(model, public)
    sigma = getattr(defense, "sigma", None)
    if sigma is None:
        return clean, clean
    noisy = PerturbedClassifier(model, sigma)
    return statistics.mean(accuracy(noisy, public) for _ in range(draws)), clean


def run_setting(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train under ``spec``, measure utility, then attack ``args.images`` single-patch updates of the trained model."""
    cpu = torch.device("cpu")
    p = plan(CASE, ATTACK, [spec], {"labels": "known", "restarts": 1}, cpu, args.iterations)
    defense = p.defenses[0]
    gen = generator(cpu, args.seed)
    model = p.case.build_model(gen)
    model.eval()
    data, public = p.case.load_data(None), p.case.public_data()
    start = time.perf_counter()
    train_fedsgd(p, model, data, args.rounds, args.train_batch, args.train_lr, gen, args.seed)
    train_seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)  # the latent noise of the accuracy draws
    utility, utility_clean = client_accuracy(model, defense, public, args.noise_draws)
    extra: dict[str, float] = {}
    if family(spec) == "dp-sgd":
        eps = defense.epsilon(dataset_size=len(data))  # the training rounds' steps, at rate batch/dataset
        extra["epsilon"] = eps if eps is not None else float("nan")
    if getattr(defense, "sigma", None) is not None:
        extra["latent_sigma_mean"] = float(defense.sigma.mean())
        extra["latent_sigma_median"] = float(defense.sigma.median())
        extra["latent_code_std"] = latent_std(model, data)  # the code's spread that sigma competes with
        extra["latent_rounds"] = defense.rounds  # models on which sigma and the decoder were (re)learned

    # One patch per class: the first private patch of each label.
    labels = data.labels
    picks = [int((labels == c).nonzero()[0]) for c in sorted(set(labels.tolist()))][: args.images]
    metric_fns = {m: registry().get("metric", m, modality=p.modality.name)() for m in METRICS}
    per_image = []
    start = time.perf_counter()
    for i, index in enumerate(picks):
        truth = p.modality.select(data, torch.tensor([index]))
        _, reconstruction = attack_update(p, model, truth, gen, args.iterations, attack_seed=1000 + i)
        rec = reconstruction.batch
        rec = p.modality.select(rec, match_order(p.modality.pairwise_cost(rec, truth)))
        row = {"index": index, "label": int(truth.labels[0])}
        row.update({name: float(fn(rec, truth).mean()) for name, fn in metric_fns.items()})
        per_image.append(row)
    attack_seconds = time.perf_counter() - start
    summary = {m: statistics.mean(r[m] for r in per_image) for m in METRICS}
    return {"defense": family(spec), "spec": spec, "utility": utility, "utility_noise_free": utility_clean,
            "train_accuracy": accuracy(model, data), **extra, **summary, "per_image": per_image,
            "train_seconds": train_seconds, "attack_seconds": attack_seconds}


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """Piecewise-linear value of a curve (sorted by x; ties averaged) at ``x``, None outside its range."""
    by_x: dict[float, list[float]] = {}
    for px, py in points:
        by_x.setdefault(px, []).append(py)
    pts = sorted((px, statistics.mean(ys)) for px, ys in by_x.items())
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1] if len(pts) == 1 and pts[0][0] == x else None


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's check at equal utility: pairs of settings within 1 accuracy point, and interpolated curves."""
    lat = [r for r in rows if r["defense"] == "latent-perturbation"]
    dp = [r for r in rows if r["defense"] == "dp-sgd"]
    out = []
    for a in lat:
        for b in dp:
            if abs(a["utility"] - b["utility"]) <= 0.01 + 1e-9:
                out.append({"kind": "matched within 1 point", "latent": a["spec"], "dp": b["spec"],
                            "utility_latent": a["utility"], "utility_dp": b["utility"],
                            "mse_latent": a["mse"], "mse_dp": b["mse"],
                            "attacker_acc_latent": a["attacker_acc"], "attacker_acc_dp": b["attacker_acc"],
                            "holds": a["mse"] > b["mse"] and a["attacker_acc"] < b["attacker_acc"]})
    for a in lat:  # each latent point against DP-SGD's curve interpolated at the same utility
        mse = interpolate([(b["utility"], b["mse"]) for b in dp], a["utility"])
        acc = interpolate([(b["utility"], b["attacker_acc"]) for b in dp], a["utility"])
        if mse is not None and acc is not None:
            out.append({"kind": "dp-sgd interpolated", "latent": a["spec"], "utility": a["utility"],
                        "mse_latent": a["mse"], "mse_dp": mse, "attacker_acc_latent": a["attacker_acc"],
                        "attacker_acc_dp": acc, "holds": a["mse"] > mse and a["attacker_acc"] < acc})
    return out


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"none": ("black", "*"), "latent-perturbation": ("tab:blue", "o"), "dp-sgd": ("tab:red", "s")}
    for ax, metric, label in ((axes[0], "mse", "reconstruction MSE (higher = more private)"),
                              (axes[1], "attacker_acc", "attacker accuracy (lower = more private)")):
        for name, (color, marker) in styles.items():
            # In knob order (the order run), so that each line is the defense's curve as its knob grows;
            # DP-SGD's settings at another clipping bound are drawn apart, unconnected.
            for other_clip in (False, True):
                pts = [(r["utility"], r[metric], r["spec"]) for r in rows
                       if r["defense"] == name and ("clip=" in r["spec"]) == other_clip]
                if not pts:
                    continue
                ax.plot([q[0] for q in pts], [q[1] for q in pts], marker="D" if other_clip else marker, color=color,
                        label=f"{name} (other clip)" if other_clip else name, markersize=7,
                        linestyle="-" if len(pts) > 1 and not other_clip else "none", alpha=0.8)
                for x, y, spec in pts:
                    knob = spec.split(":", 1)[1] if ":" in spec else ""
                    ax.annotate(knob.replace("privacy=", "λ=").replace("sigma=", "σ="), (x, y), fontsize=6,
                                textcoords="offset points", xytext=(3, 3), color=color)
        ax.set_xlabel("client utility: test accuracy")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False)
    s = payload["scale"]
    seeds = s["seed"] if isinstance(s["seed"], list) else [s["seed"]]
    fig.suptitle(f"{CASE}, {ATTACK} ({s['iterations']} it, {s['images']} patches); "
                 f"{s['rounds']} FedSGD rounds of {s['train_batch']}; mean of seeds {seeds}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def table(payload: dict[str, Any]) -> str:
    lines = ["| defense | setting | utility (acc.) | noise-free acc. | MSE | PSNR | SSIM | attacker_acc | extra |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(payload["rows"], key=lambda r: (r["defense"], -r["utility"])):
        knob = r["spec"].split(":", 1)[1] if ":" in r["spec"] else "-"
        extra = (f"ε={r['epsilon']:.3g}" if "epsilon" in r else
                 f"mean σ={r['latent_sigma_mean']:.3g}" if "latent_sigma_mean" in r else "")
        lines.append(f"| {r['defense']} | {knob} | {r['utility']:.3f} | {r['utility_noise_free']:.3f} | "
                     f"{r['mse']:.4f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['attacker_acc']:.2f} | {extra} |")
    return "\n".join(lines)


def summarize(paths: list[Path]) -> dict[str, Any]:
    """Average each setting over the per-seed result files (utility and the per-image-averaged metrics)."""
    runs = [json.loads(p.read_text()) for p in paths]
    keys = ("utility", "utility_noise_free", "train_accuracy", "epsilon", "latent_sigma_mean", "latent_sigma_median",
            *METRICS, "train_seconds", "attack_seconds")
    rows = []
    for spec in dict.fromkeys(r["spec"] for run in runs for r in run["rows"]):
        found = [r | {"seed": run["scale"]["seed"]} for run in runs for r in run["rows"] if r["spec"] == spec]
        row: dict[str, Any] = {"defense": family(spec), "spec": spec, "seeds": [r["seed"] for r in found]}
        for k in keys:
            if k in found[0]:
                row[k] = statistics.mean(r[k] for r in found)
        if len(found) > 1:
            row["utility_per_seed"] = [r["utility"] for r in found]
            row["mse_per_seed"] = [r["mse"] for r in found]
            row["attacker_acc_per_seed"] = [r["attacker_acc"] for r in found]
        row["per_image"] = [p | {"seed": r["seed"]} for r in found for p in r["per_image"]]
        rows.append(row)
    scale = dict(runs[0]["scale"]) | {"seed": sorted({run["scale"]["seed"] for run in runs}),
                                      "files": [p.name for p in paths]}
    return {"benchmark": runs[0]["benchmark"], "case": CASE, "attack": ATTACK, "scale": scale,
            "machine": [run["machine"] for run in runs], "seconds": sum(run.get("seconds", 0.0) for run in runs),
            "rows": rows, "comparison": compare(rows)}


def write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-lr", type=float, default=2e-3, help="server Adam step size")
    ap.add_argument("--images", type=int, default=6, help="attacked patches (one per class)")
    ap.add_argument("--iterations", type=int, default=600, help="inverting-gradients Adam steps")
    ap.add_argument("--noise-draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=None, help="run only these defense specs")
    ap.add_argument("--quick", action="store_true", help="smoke test: 30 rounds, 2 patches, 50 iterations")
    ap.add_argument("--summarize", action="store_true", help="merge results/curves-seed*.json into results/curves.json")
    ap.add_argument("--out", type=Path, default=None, help="default: results/curves-seed<N>.json")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="folder of earlier curves-seed<N>.json: rows of specs not run (--only) are copied from it")
    args = ap.parse_args()
    if args.summarize:
        out = args.out or RESULTS / "curves.json"
        payload = summarize(sorted(RESULTS.glob("curves-seed*.json")))
        write(out, payload)
        plot(payload, out.with_suffix(".png"))
        print(table(payload))
        print(json.dumps(payload["comparison"], indent=1))
        return
    args.out = args.out or RESULTS / f"curves-seed{args.seed}.json"
    if args.quick:
        args.rounds, args.images, args.iterations, args.noise_draws = 30, 2, 50, 1
    torch.set_num_threads(1)
    # Opacus warns that the best RDP order is its smallest at the huge epsilons of tiny noise multipliers.
    warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
    specs = args.only or [s for group in DEFENSES.values() for s in group]
    payload: dict[str, Any] = {
        "benchmark": "medical utility-privacy curves", "case": CASE, "attack": ATTACK,
        "scale": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"specs": specs},
        "machine": {"torch": torch.__version__, "gradleak": gradleak.__version__, "python": platform.python_version(),
                    "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
        "rows": [], "comparison": []}
    if args.reuse is not None:  # rows of specs whose code did not change, from an earlier run at the same seed
        old = json.loads((args.reuse / f"curves-seed{args.seed}.json").read_text())
        reused = [r for r in old["rows"] if r["spec"] not in specs]
        payload["rows"] = reused
        payload["scale"]["reused_rows"] = {"from": str(args.reuse / f"curves-seed{args.seed}.json"),
                                           "specs": [r["spec"] for r in reused]}
    start = time.perf_counter()
    for spec in specs:
        row = run_setting(spec, args)
        payload["rows"].append(row)
        payload["comparison"] = compare(payload["rows"])
        print(spec, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}, flush=True)
        write(args.out, payload)
    payload["seconds"] = time.perf_counter() - start
    payload["machine"]["load_average_end"] = os.getloadavg()
    write(args.out, payload)
    print(table(payload))


if __name__ == "__main__":
    main()
