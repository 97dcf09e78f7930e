"""One attack run: a case, an attack and defenses over consecutive private batches, scored and saved.

This is the single code path behind ``gradleak run``, studies and the Python API (:func:`gradleak.run`).
Everything that can be checked before compute starts (names, parameters, data kinds, capabilities, data
size) is checked first, so a bad run fails in a second with one clear line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .components import Attack, Case, ClientContext, Defense, Metric, Modality
from .config import _coerce, make_config, split_params
from .device import generator, resolve_device
from .errors import AttackFailed, DataError, IncompatibleError, UsageError
from .fl.client import client_update
from .matching import match_order
from .registry import Registry, registry
from .types import Batch, Reconstruction
from .view import AttackerView

log = logging.getLogger(__name__)

Progress = Callable[[int, int, int, float], None]  # (batch, step, total, objective)


@dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run`; ``as_json()`` is the ``--json`` contract of DESIGN.md."""

    case: str
    attack: str
    defenses: list[str]
    seed: int
    device: str
    seconds: float
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]]
    artifacts: dict[str, str] = field(default_factory=dict)
    success_rate: float | None = None
    utility: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    #: Samples the attack reported as failed (status ``failed: <reason>`` in ``per_sample``; not in ``metrics``).
    failed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "attack": self.attack, "defenses": self.defenses, "seed": self.seed,
            "device": self.device, "seconds": round(self.seconds, 3), "metrics": self.metrics,
            "per_sample": self.per_sample, "artifacts": self.artifacts, "success_rate": self.success_rate,
            "utility": self.utility, "params": self.params, "failed": self.failed,
        }


def parse_component(spec: str) -> tuple[str, dict[str, str]]:
    """``"prune:ratio=0.9,layers=all"`` -> ``("prune", {"ratio": "0.9", "layers": "all"})``."""
    from .errors import ConfigError

    name, _, rest = spec.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"cannot read '{item}' in '{spec}'; write NAME:key=value,key=value")
        params[key.strip()] = value.strip()
    return name.strip(), params


@dataclass
class Plan:
    """A run with every name resolved and every parameter validated, before any compute."""

    case: Case
    modality: Modality
    attack: Attack
    defenses: list[Defense]
    metrics: list[Metric]
    budget: int | None
    device: torch.device
    params: dict[str, Any]


@dataclass
class ClientPlan:
    """The client's half of a run: the case, its data kind and the defenses, resolved and validated."""

    case: Case
    modality: Modality
    defenses: list[Defense]
    device: torch.device


def client_plan(
    case: str,
    defenses: Sequence[str] = ("none",),
    sets: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    reg: Registry | None = None,
) -> ClientPlan:
    """Resolve what a client runs (no attack): ``sets`` may only hold the case's parameters.

    Used by clients of a real federation (:mod:`gradleak.integrations.flower`), which never attack.
    """
    reg = reg or registry()
    dev = resolve_device(device)
    case_cls = reg.get("case", case)
    (case_params,) = split_params(dict(sets or {}), (case_cls.qualified_name(), case_cls.Config))
    case_obj = case_cls(make_config(case_cls.Config, case_params, case_cls.qualified_name()), dev)
    return ClientPlan(case_obj, reg.modality(case_cls.modality)(device=dev),
                      _defenses(reg, case_obj, defenses, dev), dev)


def _defenses(reg: Registry, case_obj: Case, specs: Sequence[str], dev: torch.device) -> list[Defense]:
    kind = type(case_obj).modality
    where = f"case '{type(case_obj).qualified_name()}' holds {kind} data"
    out = []
    for spec in specs or ("none",):
        name, params = parse_component(spec)
        cls = reg.get("defense", name, modality=kind)
        if not cls.applies_to(kind):
            raise IncompatibleError(f"defense '{cls.name}' applies to {', '.join(sorted(cls.modalities or ()))} data, but {where}")
        case_obj.threat_model.require(cls.requires, f"defense '{cls.name}'")
        out.append(cls(make_config(cls.Config, params, cls.name), dev))
    return out


def plan(
    case: str,
    attack: str,
    defenses: Sequence[str] = ("none",),
    sets: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    budget: int | None = None,
    reg: Registry | None = None,
) -> Plan:
    reg = reg or registry()
    dev = resolve_device(device)
    case_cls = reg.get("case", case)
    modality_cls = reg.modality(case_cls.modality)
    attack_cls = reg.get("attack", attack, modality=case_cls.modality)
    where = f"case '{case_cls.qualified_name()}' holds {case_cls.modality} data"
    if not attack_cls.applies_to(case_cls.modality):
        kinds = ", ".join(sorted(attack_cls.modalities or ()))
        raise IncompatibleError(f"attack '{attack_cls.name}' applies to {kinds} data, but {where}; "
                                f"see: gradleak list attacks --modality {case_cls.modality}")
    sets = dict(sets or {})
    if "budget" in sets:
        budget = _coerce("--set", "budget", sets.pop("budget"), int)
    case_params, attack_params = split_params(
        sets, (case_cls.qualified_name(), case_cls.Config), (attack_cls.name, attack_cls.Config))
    case_obj = case_cls(make_config(case_cls.Config, case_params, case_cls.qualified_name()), dev)
    attack_obj = attack_cls(make_config(attack_cls.Config, attack_params, attack_cls.name), dev)
    threat = case_obj.threat_model
    threat.require(attack_cls.requires, f"attack '{attack_cls.name}'")
    for prior_cls in attack_cls.priors:
        threat.require(prior_cls.requires, f"prior '{prior_cls.name}' of attack '{attack_cls.name}'")
    defense_objs = _defenses(reg, case_obj, defenses, dev)
    modality = modality_cls(device=dev)
    names = list(dict.fromkeys((*modality.default_metrics, *case_cls.extra_metrics)))
    metrics = [reg.get("metric", m, modality=case_cls.modality)(device=dev) for m in names]
    if budget is not None and budget < 1:
        raise DataError(f"--budget must be >= 1, got {budget}")
    params = {"case": dict(vars(case_obj.config)), "attack": dict(vars(attack_obj.config)),
              "defenses": [{"name": d.name, **vars(d.config)} for d in defense_objs], "budget": budget}
    return Plan(case_obj, modality, attack_obj, defense_objs, metrics, budget, dev, params)


def run(
    case: str,
    attack: str,
    defenses: Sequence[str] = ("none",),
    data: str | Path | None = None,
    batch_size: int | None = None,
    batches: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    budget: int | None = None,
    sets: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    reg: Registry | None = None,
) -> RunResult:
    """Attack ``batches`` consecutive batches of ``batch_size`` private samples and score the result.

    By default: one batch of the case's built-in data, or every full batch of ``data`` when given.
    """
    p = plan(case, attack, defenses, sets, device, budget, reg)
    if not 0 <= seed < 2**32:
        raise UsageError(f"--seed must be between 0 and {2**32 - 1}, got {seed}")
    if out is not None:
        _check_out(Path(out))
    path = Path(data) if data is not None else None
    if path is not None and p.case.data_is_path and not path.exists():
        raise DataError(f"--data {path}: no such file or directory; pass a folder of images, a file, or an env id")
    samples = p.case.load_data(path).to(p.device)
    return attack_samples(p, samples, batch_size, batches, seed, progress, out,
                          all_batches_default=path is not None)


def attack_samples(
    p: Plan,
    samples: Batch,
    batch_size: int | None = None,
    batches: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    out: str | Path | None = None,
    all_batches_default: bool = False,
) -> RunResult:
    """Attack consecutive batches of ``samples`` under plan ``p`` (used by :func:`run` and by tuning on
    the attacker's surrogate data); ``batches`` None means one batch, or every full batch when
    ``all_batches_default``."""
    samples = samples.to(p.device)
    n_total = len(samples)
    bs = batch_size if batch_size is not None else p.case.default_batch_size
    if bs < 1:
        raise DataError(f"--batch-size must be >= 1, got {bs}")
    if bs > n_total:
        raise DataError(f"--batch-size {bs} is larger than the {n_total} samples of the data; use --batch-size {n_total} or less")
    available = n_total // bs
    n_batches = batches if batches is not None else (available if all_batches_default else 1)
    if n_batches < 1 or n_batches > available:
        raise DataError(f"--batches {n_batches}: the data holds {available} full batch(es) of {bs}; use 1 to {available}")
    start = time.perf_counter()
    truths, recons, per_sample = [], [], []
    utility: dict[str, list[float]] = {}
    for k in range(n_batches):
        truth = p.modality.select(samples, torch.arange(k * bs, (k + 1) * bs, device=p.device))
        try:
            reconstruction = _attack_batch(p, truth, seed, k, progress, utility)
        except AttackFailed as exc:
            log.warning("batch %d: attack '%s' failed (%s)", k, p.attack.name, exc)
            per_sample.extend({"batch": k, "index": i, "status": f"failed: {exc.reason}", "success": False}
                              for i in range(len(truth)))
            continue
        rec = reconstruction.batch
        order = match_order(p.modality.pairwise_cost(rec, truth)).to(p.device)
        failed = {int(t): reconstruction.failed[int(r)] for t, r in enumerate(order.tolist())
                  if int(r) in reconstruction.failed}
        rec = p.modality.select(rec, order)
        scores = {m.name: m(rec, truth).detach().cpu() for m in p.metrics}
        for i in range(len(truth)):
            row: dict[str, Any] = {"batch": k, "index": i}
            if i in failed:
                row.update(status=f"failed: {failed[i]}", success=False)
            else:
                row["status"] = "ok"
                row.update({name: float(v[i]) for name, v in scores.items()})
                row["success"] = bool(p.modality.is_success(row))
            per_sample.append(row)
        truths.append(truth)
        recons.append(rec)
    seconds = time.perf_counter() - start
    names = [m.name for m in p.metrics]
    ok_rows = [r for r in per_sample if r["status"] == "ok"]
    # Metrics average over the samples the attack did reconstruct; failures are counted apart, never scored.
    metrics = {n: sum(r[n] for r in ok_rows) / len(ok_rows) for n in names} if ok_rows else {}
    artifacts: dict[str, str] = {}
    if out is not None and truths:
        artifacts = save_artifacts(p.modality, truths, recons, Path(out))
    return RunResult(
        case=p.case.qualified_name(), attack=p.attack.name, defenses=[d.name for d in p.defenses], seed=seed,
        device=str(p.device), seconds=seconds, metrics=metrics, per_sample=per_sample, artifacts=artifacts,
        success_rate=sum(r["success"] for r in per_sample) / len(per_sample),
        utility={k: sum(v) / len(v) for k, v in utility.items()}, params=p.params,
        failed=len(per_sample) - len(ok_rows),
    )


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot hold the artifacts before any compute (creating the folder)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; choose a folder to write the artifacts to")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create this folder ({exc.strerror or exc}); choose a writable one") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: this folder is not writable; choose a writable one")


def _attack_batch(p: Plan, truth: Batch, seed: int, k: int, progress: Progress | None,
                  utility: dict[str, list[float]]) -> Reconstruction:
    gen = generator(p.device, seed * 1_000_003 + k)
    model = p.case.build_model(gen)
    _pretrain(p, model, gen)
    threat = p.case.threat_model
    protocol = p.case.protocol
    view = AttackerView.granted(
        p.case, p.modality, model, batch_size=len(truth), sample_shape=_sample_shape(truth),
        # The attacker's own randomness: a defense's random draws must not move the attack's starting point.
        generator=generator(p.device, (seed * 1_000_003 + k) ^ 0x5DEECE66D), labels=truth.labels,
        progress=(lambda step, total, obj: progress(k, step, total, obj)) if progress else None,
    )
    if p.attack.active:
        model = p.attack.prepare(model, view)
        view = _replace(view, model=model)
    model.train(protocol.mode == "train")
    if threat.bn_stats:
        view = _replace(view, bn_stats=batch_norm_stats(model, p.case, truth))
    trained_on, clean, sent = client_update(model, p.case, p.modality, truth, p.defenses, gen)
    context = ClientContext(model, p.case, p.modality, trained_on)
    for d in p.defenses:
        for key, value in d.utility_cost(clean, sent, context).items():
            utility.setdefault(f"{d.name}.{key}", []).append(value)
    if not sent.is_finite():
        raise DataError("the client's update contains NaN or inf (diverging local training or a defense's noise); "
                        "lower --set local_lr or the defense's strength")
    if not threat.hyperparams:
        sent = sent.replace(local_lr=None, local_batch_size=None)
    with torch.random.fork_rng(devices=[p.device] if p.device.type == "cuda" else []):
        torch.manual_seed(seed * 1_000_003 + k)
        return p.attack.reconstruct(sent, view, p.budget)


def _replace(view: AttackerView, **changes: Any) -> AttackerView:
    import dataclasses

    return dataclasses.replace(view, **changes)


def _sample_shape(batch: Batch) -> tuple[int, ...]:
    return tuple(batch.data.shape[1:]) if isinstance(batch.data, torch.Tensor) else ()


def _pretrain(p: Plan, model: torch.nn.Module, gen: torch.Generator) -> None:
    steps = p.case.config.pretrain_steps
    if not steps:
        return
    public = p.case.public_data()
    if public is None:
        raise DataError(f"case '{p.case.qualified_name()}' has no public data to pretrain on; drop pretrain_steps")
    public = public.to(p.device)
    opt = torch.optim.SGD(model.parameters(), lr=p.case.config.local_lr, momentum=0.9)
    bs = min(32, len(public))
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(public), (bs,), generator=gen, device=p.device)
        mini = p.modality.select(public, idx)
        opt.zero_grad()
        p.case.loss(p.case.forward(model, mini), mini.labels).backward()
        opt.step()


def batch_norm_stats(model: torch.nn.Module, case: Case, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The per-channel mean and variance of the inputs of every BatchNorm layer on ``batch``."""
    import copy

    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    clone = copy.deepcopy(model)  # a forward pass in train mode would move the real running statistics
    for name, module in clone.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            def hook(mod, inputs, output, name=name):
                x = inputs[0]
                dims = [d for d in range(x.dim()) if d != 1]
                stats[name] = (x.mean(dims).detach(), x.var(dims, unbiased=False).detach())
            module.register_forward_hook(hook)
    with torch.no_grad():
        case.forward(clone, batch)
    return stats


def save_artifacts(modality: Modality, truths: list[Batch], recons: list[Batch], out: Path) -> dict[str, str]:
    """Write truth and reconstruction (all batches, matched order) plus pictures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    truth, recon = modality.concat(truths), modality.concat(recons)
    artifacts = {}
    artifacts.update(modality.save(truth, out, "truth"))
    artifacts.update(modality.save(recon, out, "recon"))
    artifacts.update(modality.save_pictures(truth, recon, out))
    return artifacts
