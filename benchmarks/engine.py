"""Speed of the attack engine: iterations per second of ``gradleak.engine.invert`` on vision/lenet.

The settings are those of the ``inverting-gradients`` attack (cosine matching, signed Adam, box, step schedule,
total variation), with the true labels given so that only the optimization loop is timed. Configurations:

- batch 1 and batch 8, one restart;
- 1 vs 8 restarts on batch 1, the 8 optimized as one batched computation (``InversionSettings.restarts``);
- the peer approach to restarts: 8 single-restart runs one after another (how breaching runs its trials).

Each configuration runs ``--iterations`` iterations after a warm-up, ``--repeats`` times; the fastest repeat is
kept (the machine may be shared). Writes JSON to ``--out`` and prints a table::

    OMP_NUM_THREADS=1 python benchmarks/engine.py --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import gradleak
from gradleak.builtin.priors import TotalVariation
from gradleak.device import generator, resolve_device
from gradleak.engine import InversionSettings, invert
from gradleak.engine.functional import native_bf16
from gradleak.fl.client import client_update


def problem(device: str, batch_size: int, case: str = "vision/lenet", sets: dict | None = None, swap=None):
    """(view, observed update, labels, priors, attack config) for one FedSGD round of ``case``; ``swap`` maps the
    case's seeded model to another one (e.g. a different architecture with the same parameters)."""
    p = gradleak.plan(case, "inverting-gradients", device=device, sets={"labels": "known", **(sets or {})})
    data = p.case.load_data(None).to(p.device)
    truth = p.modality.select(data, torch.arange(batch_size, device=p.device))
    gen = generator(p.device, 0)
    model = p.case.build_model(gen)
    if swap is not None:
        model = swap(model).to(p.device)
    model.train(p.case.protocol.mode == "train")
    _, _, update = client_update(model, p.case, p.modality, truth, [], gen)
    view = gradleak.AttackerView(
        model=model, loss=p.case.loss, forward=p.case.forward, modality=p.modality, threat=p.case.threat_model,
        sample_shape=tuple(truth.data.shape[1:]), num_classes=p.case.num_classes, batch_size=batch_size,
        generator=gen, protocol=p.case.protocol, labels=truth.labels)
    priors = [(TotalVariation(device=p.device), p.attack.config.tv)]
    return view, update, truth.labels, priors, p.attack.config


def settings(config, iterations: int, restarts: int) -> InversionSettings:
    return InversionSettings(objective="cosine", optimizer="adam", lr=config.lr, iterations=iterations,
                             schedule=config.schedule, signed=config.signed, boxed=config.boxed, restarts=restarts)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(device: str, batch_size: int, restarts: int, sequential: bool, iterations: int, repeats: int,
            warmup: int) -> dict:
    """Seconds for ``iterations`` iterations of ``restarts`` restarts: batched, or one restart after another."""
    view, update, labels, priors, config = problem(device, batch_size)
    runs = restarts if sequential else 1
    per_run = 1 if sequential else restarts

    def attack(n: int) -> None:
        for _ in range(runs):
            invert(view, update, settings(config, n, per_run), labels=labels, priors=priors)

    invert(view, update, settings(config, warmup, per_run), labels=labels, priors=priors)  # warm-up
    times = [timed(device, lambda: attack(iterations)) for _ in range(repeats)]
    best = min(times)
    # Fixed cost of one invert call (candidate function, start, final evaluation): iterations=0.
    setup = min(timed(device, lambda: attack(0)) for _ in range(repeats)) / runs
    return {
        "batch_size": batch_size, "restarts": restarts, "mode": "sequential" if sequential else "batched",
        "iterations": iterations, "seconds": best, "seconds_median": statistics.median(times), "all_seconds": times,
        "seconds_per_iteration": best / iterations, "iterations_per_second": iterations / best,
        "restart_iterations_per_second": restarts * iterations / best,
        "setup_seconds_per_call": setup, "calls": runs,
        "marginal_seconds_per_iteration": max(best - runs * setup, 0.0) / iterations,
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``): bf16 timings depend on it (AMX and AVX512-BF16 or not)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> dict:
    info = {"torch": torch.__version__, "gradleak": gradleak.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "native_bf16": native_bf16(torch.device(device)),
            "device": device, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--iterations", type=int, default=50, help="timed iterations per configuration")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per configuration; the fastest is kept")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--out", default="benchmarks/results/engine.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    configs = {
        "batch1_restarts1": (1, 1, False),
        "batch8_restarts1": (8, 1, False),
        "batch1_restarts8": (1, 8, False),
        "batch1_restarts8_sequential": (1, 8, True),
    }
    results = {name: measure(device, b, r, seq, args.iterations, args.repeats, args.warmup)
               for name, (b, r, seq) in configs.items()}
    t = {name: r["seconds"] for name, r in results.items()}
    m = {name: r["marginal_seconds_per_iteration"] for name, r in results.items()}
    report = {
        "benchmark": "engine", "machine": machine(device), "configs": results,
        "ratios": {
            "time_restarts8_over_restarts1": t["batch1_restarts8"] / t["batch1_restarts1"],
            "time_batch8_over_batch1": t["batch8_restarts1"] / t["batch1_restarts1"],
            "time_batched_over_sequential_restarts8": t["batch1_restarts8"] / t["batch1_restarts8_sequential"],
            "marginal_restarts8_over_restarts1": m["batch1_restarts8"] / m["batch1_restarts1"],
            "marginal_batched_over_sequential_restarts8": m["batch1_restarts8"] / m["batch1_restarts8_sequential"],
        },
    }
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"engine speed on {device}, {torch.get_num_threads()} thread(s), {args.iterations} iterations, "
          f"best of {args.repeats}")
    print(f"{'configuration':30s} {'it/s':>8s} {'s/it':>9s} {'restart-it/s':>13s} {'setup s/call':>13s}")
    for name, r in results.items():
        print(f"{name:30s} {r['iterations_per_second']:8.1f} {r['seconds_per_iteration']:9.4f} "
              f"{r['restart_iterations_per_second']:13.1f} {r['setup_seconds_per_call']:13.4f}")
    for name, value in report["ratios"].items():
        print(f"{name:44s} {value:6.2f}")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
