"""gradleak side by side with breaching (Geiping et al.'s framework): the same attack on the same problem.

For every configuration (attack x case x batch size) this script

1. prepares one problem in this process: gradleak's case model (``vision/lenet``, ``vision/convnet`` width 64,
   ``vision/resnet18``) with its seeded initialization, a batch of real photo crops of distinct classes, the
   client's FedSGD gradient, the start point of the attack (gradleak's own draw), and the hyper-parameters;
2. runs gradleak's attack on it in a child process (``gradleak_side.py``, this venv);
3. runs breaching's attack on it in a child process of breaching's own venv (``breaching_side.py``),
   which this script creates on first use at ``benchmarks/peers/.venv-breaching`` with pip
   (``torch==2.14.1 torchvision==0.29.1 breaching==0.1.2``; about 5.6 GB; never part of gradleak's
   dependencies);
4. scores both reconstructions with the same code (gradleak's PSNR and SSIM on [0, 1] after Hungarian matching)
   and writes one JSON per configuration plus a summary to ``--out``.

Shared hyper-parameters. ``inverting-gradients``: cosine matching, total variation (weight ``--tv``), signed
Adam with lr 0.1, box constraint, step decay (x0.1 at 3/8, 5/8, 7/8), known labels, start N(0.5, 0.25^2)
clamped to [0, 1]. ``dlg``: L2 matching of data and soft labels jointly, L-BFGS lr 1 with 20 inner iterations
and no line search (torch's ``LBFGS`` defaults, as breaching uses them), no box, start N(0, 1). One restart.
Models run in eval mode with fresh BatchNorm buffers (breaching's honest-but-curious default: the server's
public buffers).

Time per iteration is measured between the first and the last gradient-matching evaluation of the loop
(so setup, the first evaluation and the final scoring are excluded); ``seconds_total`` is the whole attack call.
Peak memory is the child process's peak resident set size (``ru_maxrss``), beside its size just before the
attack. Run::

    python benchmarks/peers/run.py --threads 2 --iterations-scale 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-breaching"
PEER_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "breaching==0.1.2"]

#: (attack, case, batch size, iterations at scale 1).
CONFIGS = [
    ("inverting-gradients", "vision/lenet", 1, 1000),
    ("inverting-gradients", "vision/lenet", 8, 1000),
    ("inverting-gradients", "vision/convnet", 1, 200),
    ("inverting-gradients", "vision/convnet", 8, 60),
    ("inverting-gradients", "vision/resnet18", 1, 100),
    ("inverting-gradients", "vision/resnet18", 8, 40),
    ("dlg", "vision/lenet", 1, 100),
    ("dlg", "vision/lenet", 8, 100),
    ("dlg", "vision/convnet", 1, 4),
    ("dlg", "vision/convnet", 8, 2),
    ("dlg", "vision/resnet18", 1, 2),
    ("dlg", "vision/resnet18", 8, 2),
]


def peer_python() -> Path:
    """breaching's interpreter, creating its venv with pip on first use."""
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import breaching"], capture_output=True).returncode == 0:
        return python
    base = Path(sys.base_prefix) / "bin" / "python3"
    print(f"creating breaching's venv at {VENV} (pip install {' '.join(PEER_PACKAGES)}; ~5.6 GB)", flush=True)
    subprocess.run([str(base), "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", *PEER_PACKAGES], check=True)
    return python


def build_model(case_obj, case: str, gen: torch.Generator) -> torch.nn.Module:
    """The case's model; for ``vision/convnet`` the inversefed/breaching ConvNet (see ``models.py``) with the
    same seeded parameters, since gradleak's ConvNet pools after a different layer."""
    model = case_obj.build_model(gen)
    if case != "vision/convnet":
        return model
    from models import InverseFedConvNet

    ours = InverseFedConvNet(width=64, num_classes=case_obj.num_classes)
    with torch.no_grad():
        for a, b in zip(ours.parameters(), model.parameters(), strict=True):
            a.copy_(b)
    return ours


def prepare(attack: str, case: str, batch_size: int, iterations: int, threads: int, tv: float, seed: int) -> dict:
    """The shared problem: weights, batch, observed gradient, start point, hyper-parameters."""
    import gradleak
    from gradleak.device import generator
    from gradleak.fl.client import client_update

    joint = attack == "dlg"
    sets: dict = {"labels": "unknown" if joint else "known", "mode": "eval", "restarts": 1}
    if joint:
        sets.update(lr=1.0, lbfgs_inner=20, line_search=False, boxed=False)
        hyper = {"lr": 1.0, "lbfgs_inner": 20, "line_search": False, "boxed": False}
    else:
        sets.update(tv=tv, lr=0.1, signed=True, boxed=True, schedule="step", init_mean=0.5, init_std=0.25)
        hyper = {"lr": 0.1, "tv": tv, "signed": True, "boxed": True, "schedule": "step", "init_mean": 0.5,
                 "init_std": 0.25}
    p = gradleak.plan(case, attack, device="cpu", sets=sets)
    data = p.case.load_data(None)
    # The first crop of each of the first classes: distinct classes, as in a typical federated batch.
    first: dict[int, int] = {}
    for i, label in enumerate(data.labels.tolist()):
        first.setdefault(label, i)
    truth = p.modality.select(data, torch.tensor(list(first.values())[:batch_size]))
    model_seed = seed
    gen = generator(p.device, model_seed)
    model = build_model(p.case, case, gen)
    model.train(False)
    _, _, update = client_update(model, p.case, p.modality, truth, [], gen)
    names = [n for n, q in model.named_parameters() if q.requires_grad]
    # The start point: exactly what gradleak's engine draws from the attack's generator.
    attack_seed = seed + 1
    g = generator(p.device, attack_seed)
    z = torch.randn((1, batch_size, *truth.data.shape[1:]), generator=g)
    if joint:
        init = z[0]
        logits = torch.randn(1, batch_size, p.case.num_classes, generator=g)[0]
    else:
        init = (0.5 + 0.25 * z[0]).clamp(0, 1)
        logits = torch.zeros(0)
    return {
        "attack": attack, "case": case, "batch_size": batch_size, "iterations": iterations, "threads": threads,
        "num_classes": p.case.num_classes, "train_mode": False, "labels_known": not joint,
        "gradleak_sets": sets, "hyper": hyper, "model_seed": model_seed, "attack_seed": attack_seed,
        "parameters": [q.detach().clone() for q in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
        "gradient": [update.tensors[n].detach().clone() for n in names],
        "data": truth.data.contiguous().clone(), "labels": truth.labels.clone(),
        "init_data": init, "init_logits": logits,
    }


def timing(side: dict, iterations: int) -> dict:
    """Per-iteration time of the loop without its first evaluation (warm-up; compilation when enabled)."""
    stamps = side["evaluation_stamps"][: side["loop_evaluations"]]
    evals = len(stamps)
    out = {"seconds_total": side["seconds_total"], "loop_evaluations": evals}
    if evals >= 3:
        per_eval = (stamps[-1] - stamps[1]) / (evals - 2)
        diffs = np.diff(stamps[1:])
        out["first_evaluation_seconds"] = stamps[1] - stamps[0]
        out["seconds_per_evaluation"] = per_eval
        out["seconds_per_evaluation_median"] = float(np.median(diffs))
        out["evaluations_per_iteration"] = evals / iterations
        # Adam: one evaluation an iteration; L-BFGS: up to 20 (fewer when it converges early).
        out["seconds_per_iteration"] = per_eval * evals / iterations
        # What the first evaluation cost beyond an ordinary one: compilation, lazy initialisation.
        out["warmup_seconds"] = max(out["first_evaluation_seconds"] - per_eval, 0.0)
    return out


def score(recon: np.ndarray, problem: dict) -> dict:
    from gradleak import Batch
    from gradleak.matching import match_order
    from gradleak_vision.metrics import PSNR, SSIM
    from gradleak_vision.modality import Image

    truth = Batch(problem["data"], problem["labels"], "image")
    rec = Batch(torch.as_tensor(recon), None, "image")
    order = match_order(Image().pairwise_cost(rec, truth))
    rec = Batch(rec.data[order], None, "image")
    psnr, ssim = PSNR()(rec, truth), SSIM()(rec, truth)
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "psnr_per_sample": psnr.tolist()}


def run_side(python: Path, script: str, problem_path: Path, work: Path, name: str,
             extra_env: dict[str, str]) -> tuple[dict, np.ndarray]:
    out, recon = work / f"{name}.json", work / f"{name}.npy"
    env = {**os.environ, **extra_env}
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch.load(problem_path, weights_only=True)["threads"])
    proc = subprocess.run([str(python), str(HERE / script), str(problem_path), str(out), str(recon)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text()), np.load(recon)


VARIANTS = ("fp32", "tf32", "bf16", "compile", "compile-bf16", "channels-last", "channels-last-bf16")


def variant_env(variant: str) -> dict[str, str]:
    """Environment of a gradleak run: one of ``VARIANTS`` (``tf32`` changes only CUDA arithmetic)."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}: use one of {', '.join(VARIANTS)}")
    precision = next((p for p in ("bf16", "tf32") if variant.endswith(p)), "fp32")
    return {"GRADLEAK_COMPILE": "1" if variant.startswith("compile") else "0", "GRADLEAK_PRECISION": precision,
            "GRADLEAK_CHANNELS_LAST": "1" if variant.startswith("channels-last") else "0"}


def machine(threads: int) -> dict:
    from engine import cpu_model  # benchmarks/engine.py

    from gradleak.engine.functional import native_bf16

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
            "native_bf16": native_bf16(torch.device("cpu")),
            "cpu_count": os.cpu_count(),
            "threads": threads, "gpu": None}
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads in both children (default 2)")
    parser.add_argument("--iterations-scale", type=float, default=1.0,
                        help="multiply every configuration's iterations (default 1)")
    parser.add_argument("--only", default="", help="comma-separated substrings; run matching configurations only")
    parser.add_argument("--tv", type=float, default=0.03, help="total-variation weight of inverting-gradients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="fp32",
                        help="gradleak runs, comma-separated: fp32, tf32 and bf16 (GRADLEAK_PRECISION), compile "
                             "(GRADLEAK_COMPILE=1), compile-bf16, channels-last (GRADLEAK_CHANNELS_LAST=1), "
                             "channels-last-bf16; breaching always runs its default fp32")
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    peer = peer_python()
    variants = args.variants.split(",")
    summary = []
    for attack, case, batch_size, base_iterations in CONFIGS:
        key = f"{attack}_{case.split('/')[1]}_b{batch_size}"
        if args.only and not any(s in key for s in args.only.split(",")):
            continue
        iterations = max(2, round(base_iterations * args.iterations_scale))
        problem = prepare(attack, case, batch_size, iterations, args.threads, args.tv, args.seed)
        problem_path = work / f"{key}{args.tag}.pt"
        torch.save(problem, problem_path)
        record: dict = {"benchmark": "peers", "config": key, "attack": attack, "case": case,
                        "batch_size": batch_size, "iterations": iterations, "hyper": problem["hyper"],
                        "machine": machine(args.threads), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime())}
        sides = [(f"gradleak-{v}", Path(sys.executable), "gradleak_side.py", variant_env(v)) for v in variants]
        sides.append(("breaching", peer, "breaching_side.py", {}))
        for name, python, script, env in sides:
            side, recon = run_side(python, script, problem_path, work, f"{key}{args.tag}_{name}", env)
            record[name] = {**timing(side, iterations), **score(recon, problem),
                            **{k: side[k] for k in ("version", "torch", "threads", "peak_rss_mb",
                                                     "rss_before_attack_mb", "process_peak_rss_mb", "peak_reset",
                                                     "objective", "torch_func_import_seconds", "options",
                                                     "model_check_rel_err") if k in side},
                            "attack_memory_mb": side["peak_rss_mb"] - side["rss_before_attack_mb"]}
            print(f"{key:40s} {name:16s} s/it {record[name].get('seconds_per_iteration', float('nan')):.4f} "
                  f"PSNR {record[name]['psnr']:.2f} SSIM {record[name]['ssim']:.3f} "
                  f"attack memory {record[name]['attack_memory_mb']:.0f} MB", flush=True)
        b = record["breaching"]
        record["ratios"] = {}
        for v in variants:
            g = record[f"gradleak-{v}"]
            ratios = {"psnr_difference_db": g["psnr"] - b["psnr"], "ssim_difference": g["ssim"] - b["ssim"],
                      "attack_memory_ratio": g["attack_memory_mb"] / max(b["attack_memory_mb"], 1e-9)}
            if "seconds_per_iteration" in g and "seconds_per_iteration" in b:
                ratios["speedup_per_iteration"] = b["seconds_per_iteration"] / g["seconds_per_iteration"]
                ratios["speedup_per_evaluation"] = b["seconds_per_evaluation"] / g["seconds_per_evaluation"]
            record["ratios"][f"gradleak-{v}"] = ratios
        record["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        (out_dir / f"{key}{args.tag}.json").write_text(json.dumps(record, indent=2) + "\n")
        summary.append(record)
    print(f"{'configuration':40s} {'gradleak':16s} {'speedup/it':>10s} {'speedup/eval':>12s} {'dPSNR':>7s} "
          f"{'mem ratio':>9s}")
    for r in summary:
        for name, q in r["ratios"].items():
            print(f"{r['config']:40s} {name:16s} {q.get('speedup_per_iteration', float('nan')):10.2f} "
                  f"{q.get('speedup_per_evaluation', float('nan')):12.2f} {q['psnr_difference_db']:7.2f} "
                  f"{q['attack_memory_ratio']:9.2f}")


if __name__ == "__main__":
    main()
