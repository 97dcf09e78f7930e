"""breaching's half of the side-by-side benchmark, run by the interpreter of breaching's own venv.

Called by ``benchmarks/peers/run.py`` as ``.venv-breaching/bin/python breaching_side.py PROBLEM.pt OUT.json
RECON.npy``. Imports only torch, numpy, omegaconf and breaching (never gradleak). Offline configuration:

- the attack is breaching's own config (``invertinggradients`` or ``deepleakage``), loaded with
  ``breaching.get_attack_config``, with the shared hyper-parameters of the problem file written over it;
- the model is built by breaching (``construct_model``: ``ConvNet``, ``resnet18``, ``lenet_zhu``) for a
  CIFAR-like data config (no download: only ``shape``, ``classes`` and the name are read), then given the
  problem's weights in parameter order (every shape is checked, and the true batch's gradient is recomputed
  on breaching's model and compared with the observed one);
- server payload and user data are the dictionaries breaching's attacker consumes, filled directly; the data
  is in [0, 1] without normalization (no ``mean``/``std`` in the metadata), as in gradleak;
- the start point is the problem's (``initial_data``; the joint attack's label logits are handed in through
  the attacker's ``_initialize_data``), so both implementations start from the same candidate.

The only instrumentation stamps the time of every gradient-matching evaluation (a wrapper around the
attacker's objective).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import torch

import procmem

MODELS = {"vision/lenet": "lenet_zhu", "vision/convnet": "ConvNet", "vision/resnet18": "resnet18"}


def main(problem_path: str, out_path: str, recon_path: str) -> None:
    problem = torch.load(problem_path, weights_only=True)
    torch.set_num_threads(int(problem["threads"]))
    torch.manual_seed(0)
    logging_quiet()

    import breaching
    from omegaconf import OmegaConf

    attack = problem["attack"]
    joint = attack == "dlg"
    cfg = breaching.get_attack_config("deepleakage" if joint else "invertinggradients")
    hp = problem["hyper"]
    cfg.optim.max_iterations = int(problem["iterations"])
    cfg.optim.step_size = float(hp["lr"])
    cfg.optim.callback = 10**9
    cfg.restarts.num_trials = 1
    if not joint:
        cfg.regularization.total_variation.scale = float(hp["tv"])

    shape = list(problem["data"].shape[1:])
    classes = int(problem["num_classes"])
    cfg_data = OmegaConf.create({"name": "CIFAR10", "modality": "vision", "task": "classification",
                                 "shape": shape, "classes": classes})
    model, loss_fn = breaching.cases.construct_model(MODELS[problem["case"]], cfg_data, pretrained=False)
    params, buffers = list(model.parameters()), list(model.buffers())
    if [tuple(p.shape) for p in params] != [tuple(v.shape) for v in problem["parameters"]]:
        raise SystemExit(f"breaching's {MODELS[problem['case']]} does not have gradleak's parameter shapes")
    with torch.no_grad():
        for param, value in zip(params, problem["parameters"]):
            param.copy_(value)
        for buf, value in zip(buffers, problem["buffers"]):
            buf.copy_(value)
    model.train(bool(problem["train_mode"]))
    # The same network? Recompute the true batch's gradient on breaching's model.
    truth_grad = torch.autograd.grad(loss_fn(model(problem["data"]), problem["labels"]), params)
    ours = torch.cat([g.flatten() for g in truth_grad])
    observed = torch.cat([g.flatten() for g in problem["gradient"]])
    check = float((ours - observed).norm() / observed.norm())

    setup = dict(device=torch.device("cpu"), dtype=torch.float)
    attacker = breaching.attacks.prepare_attack(model, loss_fn, cfg, setup)
    metadata = OmegaConf.create({"shape": shape, "modality": "vision", "task": "classification", "classes": classes})
    # Eval mode reads the server's public buffers (breaching's honest-but-curious default); train mode sends
    # none, so breaching normalises with batch statistics, as the client did.
    payload = [{"parameters": [p.detach().clone() for p in params],
                "buffers": None if problem["train_mode"] else [b.clone() for b in buffers], "metadata": metadata}]
    user = [{"gradients": [g.clone() for g in problem["gradient"]], "buffers": None,
             "metadata": {"num_data_points": int(problem["batch_size"]),
                          "labels": None if joint else problem["labels"].clone(), "local_hyperparams": None}}]

    if joint:
        logits = problem["init_logits"]
        original_init = attacker._initialize_data

        def initialize(data_shape):
            candidate = original_init(data_shape)
            if tuple(data_shape) == tuple(logits.shape):
                candidate.data.copy_(logits)
            return candidate

        attacker._initialize_data = initialize

    stamps: list[float] = []
    forward = attacker.objective.forward

    def timed_forward(*args, **kwargs):
        stamps.append(time.perf_counter())
        return forward(*args, **kwargs)

    attacker.objective.forward = timed_forward

    rss_before, peak_was_reset = procmem.rss_mb(), procmem.reset_peak()
    start = time.perf_counter()
    rec, stats = attacker.reconstruct(payload, user, {}, initial_data=problem["init_data"].clone(), dryrun=False)
    total = time.perf_counter() - start
    np.save(recon_path, rec["data"].detach().cpu().float().numpy())
    labels = rec["labels"]
    result = {
        "implementation": "breaching", "version": getattr(breaching, "__version__", "0.1.2"),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "seconds_total": total,
        "evaluation_stamps": [s - start for s in stamps],
        # After the loop, _score_trial evaluates the chosen candidate once more (through a fresh objective
        # object, so it is not stamped).
        "loop_evaluations": len(stamps),
        "peak_rss_mb": procmem.peak_mb(), "rss_before_attack_mb": rss_before, "peak_reset": peak_was_reset,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "labels": None if labels is None else labels.reshape(-1).tolist(),
        "objective": float(stats["opt_value"]) if "opt_value" in stats else None,
        "model_check_rel_err": check,
        # breaching returns the iterate of lowest total objective, not the last one.
        "best_iteration": int(np.argmin(stats["Trial_0_Val"])) + 1 if stats.get("Trial_0_Val") else None,
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


def logging_quiet() -> None:
    import logging

    logging.getLogger("breaching").setLevel(logging.WARNING)


if __name__ == "__main__":
    main(*sys.argv[1:4])
