"""``gradleak tune``: search an attack's hyper-parameters with Optuna, on data the attacker owns.

The objective is the attack's quality (the case's primary metric) on batches of the case's *public* data,
the surrogate an attacker legitimately holds, attacked exactly as a private batch would be: the client's
update is computed from the surrogate batch and the reconstruction is scored against it. The private data
is never looked at, so tuned settings carry no information the attacker could not have.

Search space: every ``float`` field of the attack's ``Config`` with a positive default, log-uniform over
[default / 10, default * 10], plus every ``bool`` and choice (``Literal``) field; integer fields
(iterations, restarts) are budgets, not tuned. ``--param NAME=LOW:HIGH`` or ``--param NAME=a,b,c`` sets
a field's range explicitly (and can add integer fields). Trials live in the same SQLite file as studies
(``DIR/results.sqlite``, Optuna's own tables), so a tuning run resumes where it stopped; the best
settings are written as a study preset ``DIR/best.toml``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, DataError, UsageError
from .optional import import_optional

Dimension = tuple[str, Any]  # ("float", (lo, hi, log)) | ("int", (lo, hi)) | ("choice", [values])


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    metric: str
    higher_is_better: bool
    trials: int
    preset: Path


def search_space(config_cls: type, overrides: Mapping[str, str] = {}) -> dict[str, Dimension]:
    """The dimensions searched for ``config_cls`` (see the module docstring)."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    space: dict[str, Dimension] = {}
    for name, f in fields.items():
        kind, default = hints[name], f.default
        if typing.get_origin(kind) is Literal:
            space[name] = ("choice", list(typing.get_args(kind)))
        elif kind is bool:
            space[name] = ("choice", [False, True])
        elif kind is float and isinstance(default, (int, float)) and default > 0:
            space[name] = ("float", (default / 10, default * 10, True))
    for name, text in overrides.items():
        if name not in fields:
            raise ConfigError(f"--param {name}: the attack has no such parameter; valid: {', '.join(sorted(fields))}")
        space[name] = _parse_range(name, text, hints[name])
    if not space:
        raise UsageError(f"{config_cls.__qualname__} has nothing to tune; give ranges with --param NAME=LOW:HIGH")
    return space


def _parse_range(name: str, text: str, kind: Any) -> Dimension:
    if ":" in text:
        lo_s, _, hi_s = text.partition(":")
        try:
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise ConfigError(f"--param {name}={text}: expected LOW:HIGH numbers, e.g. {name}=0.01:1") from None
        if not lo < hi:
            raise ConfigError(f"--param {name}={text}: LOW must be below HIGH")
        if kind is int:
            return ("int", (int(lo), int(hi)))
        return ("float", (lo, hi, lo > 0))
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise ConfigError(f"--param {name}=: give LOW:HIGH or a comma-separated list of values")
    return ("choice", values)


def _suggest(trial: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    params = {}
    for name, (kind, spec) in space.items():
        if kind == "float":
            lo, hi, log = spec
            params[name] = trial.suggest_float(name, lo, hi, log=log)
        elif kind == "int":
            params[name] = trial.suggest_int(name, *spec)
        else:
            params[name] = trial.suggest_categorical(name, spec)
    return params


def tune(case: str, attack: str, trials: int = 20, out: str | Path = "tune-out", sets: Mapping[str, Any] | None = None,
         params: Mapping[str, str] | None = None, budget: int | None = None, batch_size: int | None = None,
         batches: int = 1, seed: int = 0, device: str = "auto", show_progress: bool = False) -> TuneResult:
    """Run ``trials`` Optuna trials (TPE, seeded) and write ``out/best.toml``; see the module docstring."""
    optuna = import_optional("optuna", "gradleak[tune]", "gradleak tune")
    from .registry import registry
    from .runner import attack_samples, plan
    from .study.store import ResultStore

    if trials < 1:
        raise UsageError(f"--trials must be >= 1, got {trials}")
    base = plan(case, attack, sets=sets, device=device, budget=budget)
    public = base.case.public_data()
    if public is None:
        raise DataError(f"case '{base.case.qualified_name()}' has no public data for the attacker to tune on; "
                        "tuning never uses the private data")
    space = search_space(type(base.attack.config), params or {})
    metric_name = base.modality.primary_metric
    metric_cls = registry().get("metric", metric_name, modality=base.modality.name)
    higher = bool(metric_cls.higher_is_better)
    directory = Path(out)
    store = ResultStore(directory)  # creates the folder and the runs table beside Optuna's
    store.close()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"tune:{base.case.qualified_name()}:{base.attack.name}",
        storage=f"sqlite:///{(directory / ResultStore.FILENAME).resolve()}",
        direction="maximize" if higher else "minimize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed))
    fixed = dict(sets or {})

    def objective(trial: Any) -> float:
        chosen = _suggest(trial, space)
        p = plan(case, attack, sets={**fixed, **chosen}, device=device, budget=budget)
        result = attack_samples(p, public, batch_size=batch_size, batches=batches, seed=seed + trial.number)
        value = result.metrics.get(metric_name)
        if value is None:
            raise optuna.TrialPruned(f"no {metric_name}: every sample failed")
        return float(value)

    done = len([t for t in study.trials if t.state.is_finished()])
    study.optimize(objective, n_trials=max(0, trials - done), show_progress_bar=show_progress, catch=(DataError,))
    best = study.best_trial
    preset = directory / "best.toml"
    preset.write_text(_preset(case, attack, fixed, best.params, budget, metric_name, best.value), encoding="utf-8")
    return TuneResult(dict(best.params), float(best.value), metric_name, higher, len(study.trials), preset)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _preset(case: str, attack: str, fixed: Mapping[str, Any], best: Mapping[str, Any], budget: int | None,
            metric: str, value: float) -> str:
    items = {**fixed, **best}
    lines = [f"# Tuned by gradleak tune on the attacker's public data: {metric} = {value:.4g}.",
             "[study]", f'name = "tuned-{case.replace("/", "-")}-{attack}"', "", "[[run]]",
             f"case = {json.dumps(case)}", f"attack = {json.dumps(attack)}"]
    if budget is not None:
        lines.append(f"budget = {budget}")
    if items:
        lines.append("set = { " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in sorted(items.items())) + " }")
    return "\n".join(lines) + "\n"


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``--param NAME=RANGE`` items as a dict (the same KEY=VALUE reading as ``--set``)."""
    from .cli import parse_assignments

    return parse_assignments(items, "--param", "NAME=LOW:HIGH or NAME=a,b,c")
