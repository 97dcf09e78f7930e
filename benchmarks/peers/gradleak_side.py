"""gradleak's half of the side-by-side benchmark: run one attack on a prepared problem, in its own process.

Called by ``benchmarks/peers/run.py`` as ``python gradleak_side.py PROBLEM.pt OUT.json RECON.npy``. The problem
file (written by ``run.py``) holds the model weights, the private batch, the observed gradient, the start
point and the hyper-parameters. The attack runs through gradleak's own ``Attack.reconstruct`` (the
``dlg``/``inverting-gradients`` components and the shared engine); the only instrumentation is a wrapper
around the engine's candidate-update function that stamps the time of every gradient evaluation.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time

import numpy as np
import torch

import procmem


def main(problem_path: str, out_path: str, recon_path: str) -> None:
    problem = torch.load(problem_path, weights_only=True)
    torch.set_num_threads(int(problem["threads"]))
    torch.manual_seed(0)

    import gradleak
    import gradleak.engine.functional as functional
    import gradleak.engine.inversion as inversion
    from gradleak.device import generator
    from gradleak.types import Update

    stamps: list[float] = []
    original = inversion.CandidateUpdate

    class Timed(original):  # type: ignore[misc, valid-type]
        def __call__(self, *args, **kwargs):
            stamps.append(time.perf_counter())
            return super().__call__(*args, **kwargs)

    inversion.CandidateUpdate = Timed
    functional.CandidateUpdate = Timed

    p = gradleak.plan(problem["case"], problem["attack"], device="cpu", sets=dict(problem["gradleak_sets"]))
    gen = generator(p.device, int(problem["model_seed"]))
    if problem["case"] == "vision/convnet":
        from models import InverseFedConvNet  # the ConvNet breaching builds (see models.py)

        model = InverseFedConvNet(width=64, num_classes=p.case.num_classes)
    else:
        model = p.case.build_model(gen)
    with torch.no_grad():
        for param, value in zip(model.parameters(), problem["parameters"], strict=True):
            param.copy_(value)
        for buf, value in zip(model.buffers(), problem["buffers"], strict=True):
            buf.copy_(value)
    model.train(bool(problem["train_mode"]))
    names = [n for n, q in model.named_parameters() if q.requires_grad]
    batch_size = int(problem["batch_size"])
    update = Update(tensors=dict(zip(names, problem["gradient"], strict=True)), kind="gradient",
                    num_samples=batch_size)
    labels = problem["labels"] if problem["labels_known"] else None
    view = gradleak.AttackerView(
        model=model, loss=p.case.loss, forward=p.case.forward, modality=p.modality, threat=p.case.threat_model,
        sample_shape=tuple(problem["data"].shape[1:]), num_classes=p.case.num_classes, batch_size=batch_size,
        generator=generator(p.device, int(problem["attack_seed"])), protocol=p.case.protocol, labels=labels)

    # torch.func imports torch._dynamo on its first use (seconds, ~70 MB): a one-time cost of the process,
    # paid here so that neither the first iteration nor the attack's memory counts it.
    t0 = time.perf_counter()
    importlib.import_module("torch._dynamo")
    import_seconds = time.perf_counter() - t0
    rss_before, peak_was_reset = procmem.rss_mb(), procmem.reset_peak()
    start = time.perf_counter()
    rec = p.attack.reconstruct(update, view, budget=int(problem["iterations"]))
    total = time.perf_counter() - start
    np.save(recon_path, rec.batch.data.detach().cpu().float().numpy())
    result = {
        "implementation": "gradleak", "version": gradleak.__version__, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "seconds_total": total, "evaluation_stamps": [s - start for s in stamps],
        # The engine evaluates the final candidate once more after the loop; that stamp is not an iteration.
        "loop_evaluations": len(stamps) - 1,
        "peak_rss_mb": procmem.peak_mb(), "rss_before_attack_mb": rss_before, "peak_reset": peak_was_reset,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_func_import_seconds": import_seconds,
        "options": {"compile": os.environ.get("GRADLEAK_COMPILE", "0"),
                    "precision": os.environ.get("GRADLEAK_PRECISION", "fp32"),
                    "channels_last": os.environ.get("GRADLEAK_CHANNELS_LAST", "0")},
        "labels": None if rec.batch.labels is None else rec.batch.labels.tolist(),
        "objective": rec.objective,
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
