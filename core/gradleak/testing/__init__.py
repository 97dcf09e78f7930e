"""Conformance kit for gradleak plugins: run it in your plugin's own tests.

::

    # tests/test_conformance.py of your plugin distribution
    import gradleak.testing

    def test_conformance():
        gradleak.testing.check_plugin("myplugin")   # the entry-point name

:func:`check_plugin` loads a fresh :class:`gradleak.Registry` from the installed entry points, asserts that
the plugin loaded (status ``ok``) and checks every component it registered with :func:`check_component`.
The first violation raises :class:`AssertionError` naming the component and the rule. Everything runs on
the CPU in seconds: cases load their built-in data and build their model, metrics score a case's own data
against itself, modalities round-trip a batch of two samples through ``select``/``concat``/``save``.

A component may name a first-party data kind (``image``, ``graph``, ``text``, ``transition``, ``spikes``)
whose plugin is not installed: that cannot be checked here and is only logged. Any other modality name must
be registered by some loaded plugin.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..components import KINDS, Attack, Case, Component, Metric, Modality
from ..errors import DependencyMissing, UsageError
from ..config import make_config
from ..registry import _KEBAB, _SNAKE, Registry
from ..types import CAPABILITIES, Batch

__all__ = ["FIRST_PARTY_KINDS", "check_component", "check_plugin"]

log = logging.getLogger(__name__)

#: Data kinds of the first-party plugins (DESIGN.md), with the plugin that registers each.
FIRST_PARTY_KINDS: dict[str, str] = {"image": "vision", "graph": "graph", "text": "text", "transition": "rl",
                                     "spikes": "snn"}
DEFENSE_STAGES = ("data", "model", "train", "update")


def check_plugin(name: str, registry: Registry | None = None) -> None:
    """Assert that plugin ``name`` (its entry-point name; ``"builtin"`` for gradleak's own) loads and that
    every component it registers conforms. Raises :class:`AssertionError` on the first violation.

    ``registry`` defaults to a fresh :class:`gradleak.Registry` over the installed entry points; pass
    ``Registry(entry_points=False, extra=[(name, module)])`` to check a module that is not installed."""
    reg = registry if registry is not None else Registry()
    info = reg.infos.get(name)
    loaded = ", ".join(sorted(reg.infos)) or "(none)"
    _check(info is not None, f"no plugin named '{name}' (loaded: {loaded}); is its distribution installed "
                             f"with an entry point in the 'gradleak' group?")
    _check(info.status == "ok", f"plugin '{name}' is {info.status}: {info.error}")
    kit = _Kit(reg)
    for kind in KINDS:
        for cls in reg.components(kind, plugin=name):
            kit.component(cls)


def check_component(cls: type, registry: Registry | None = None) -> None:
    """Assert that one component class conforms (name, docstring, Config, capabilities, modalities and the
    rules of its kind). Modalities and cases are looked up in ``registry`` (default: a fresh one)."""
    _Kit(registry if registry is not None else Registry()).component(cls)


def _check(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class _Kit:
    """One conformance run: a registry plus the cases' data, loaded once."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self._data: dict[type, Batch] = {}
        self._unchecked: set[str] = set()

    # ---------------------------------------------------------------- shared rules
    def component(self, cls: type) -> None:
        _check(isinstance(cls, type) and issubclass(cls, Component),
               f"{cls!r} is not a gradleak component class")
        kind = getattr(cls, "kind", None)
        _check(kind in KINDS, f"{cls.__qualname__}: kind {kind!r} is none of {', '.join(KINDS)}")
        base = KINDS[kind]
        what = f"{kind} {getattr(cls, 'name', cls.__qualname__)!r} ({cls.__module__}.{cls.__qualname__})"
        _check(issubclass(cls, base), f"{what} is not a subclass of gradleak.{base.__name__}")
        abstract = sorted(n for n in dir(cls) if getattr(getattr(cls, n, None), "__isabstractmethod__", False))
        _check(not abstract, f"{what} leaves abstract methods unimplemented: {', '.join(abstract)}")
        name = getattr(cls, "name", None)
        snake = kind == "metric"
        _check(isinstance(name, str) and (_SNAKE if snake else _KEBAB).fullmatch(name),
               f"{what}: name {name!r} must be {'snake_case' if snake else 'kebab-case'}")
        doc = (cls.__doc__ or "").strip()
        _check(doc and doc.splitlines()[0].strip(),
               f"{what} needs a docstring whose first line says what it is (and names the paper)")
        self._config(cls, what)
        requires = getattr(cls, "requires", frozenset())
        _check(isinstance(requires, (set, frozenset, tuple, list)) and all(isinstance(r, str) for r in requires),
               f"{what}: requires must be a frozenset of capability names, got {requires!r}")
        unknown = sorted(set(requires) - set(CAPABILITIES))
        _check(not unknown, f"{what} requires unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
        if kind not in ("modality", "case"):
            mods = cls.modalities
            named = isinstance(mods, (set, frozenset)) and mods and all(isinstance(m, str) for m in mods)
            _check(mods is None or named,
                   f"{what}: modalities must be None (all) or a non-empty frozenset of names, got {mods!r}")
            for m in sorted(mods or ()):
                self._known_modality(m, what)
        getattr(self, f"_kind_{kind}")(cls, what)

    def _config(self, cls: type, what: str) -> None:
        config_cls = cls.Config
        _check(dataclasses.is_dataclass(config_cls) and isinstance(config_cls, type),
               f"{what}: Config must be a dataclass, got {config_cls!r}")
        try:
            config_cls()
        except Exception as exc:
            raise AssertionError(f"{what}: Config() must build from defaults: {type(exc).__name__}: {exc}") from exc
        try:
            make_config(config_cls, {}, cls.name)
        except Exception as exc:
            raise AssertionError(f"{what}: make_config(Config, {{}}) failed: {type(exc).__name__}: {exc}") from exc

    def _known_modality(self, modality: object, what: str) -> None:
        _check(isinstance(modality, str), f"{what}: modality names are strings, got {modality!r}")
        if self.reg.components("modality", modality=modality):
            return
        registered = sorted(c.name for c in self.reg.components("modality"))
        owner = FIRST_PARTY_KINDS.get(modality)
        info = self.reg.infos.get(owner) if owner else None
        if owner:  # a first-party kind: its own plugin's check verifies it registers the modality
            if modality not in self._unchecked:
                self._unchecked.add(modality)
                log.warning("%s names modality '%s', not checked: plugin '%s' is %s and does not register it",
                            what, modality, owner, info.status if info else "not installed")
            return
        raise AssertionError(f"{what} names modality '{modality}', which no loaded plugin registers "
                             f"(registered: {', '.join(registered) or 'none'})")

    # ---------------------------------------------------------------- data helpers
    def _case_data(self, case_cls: type[Case]) -> Batch | None:
        """The case's built-in data; None for an ``online_data`` case whose data is not here (a clear UsageError)."""
        if case_cls not in self._data:
            try:
                self._data[case_cls] = self._new_case(case_cls).load_data(None)
            except UsageError as exc:
                if not case_cls.online_data:
                    raise AssertionError(f"case {case_cls.qualified_name()}: load_data(None) (its built-in data) "
                                         f"raised {type(exc).__name__}: {exc}") from exc
                log.warning("case %s: online data not available here, its data checks are skipped (%s)",
                            case_cls.qualified_name(), exc)
                self._data[case_cls] = None
            except Exception as exc:
                raise AssertionError(f"case {case_cls.qualified_name()}: load_data(None) (its built-in data) raised "
                                     f"{type(exc).__name__}: {exc}") from exc
        return self._data[case_cls]

    def _pair(self, modality: Modality, case_cls: type[Case]) -> Batch:
        data = self._case_data(case_cls)
        return modality.select(data, torch.arange(min(2, len(data))))

    def _modality_instance(self, name: str) -> Modality | None:
        found = self.reg.components("modality", modality=name)
        return found[0](device="cpu") if found else None

    # ---------------------------------------------------------------- kinds
    def _kind_attack(self, cls: type[Attack], what: str) -> None:
        _check(callable(getattr(cls, "reconstruct", None)), f"{what} must implement reconstruct(update, view, budget)")
        signature = inspect.signature(cls.reconstruct)
        try:
            signature.bind(None, None, None, None)
        except TypeError:
            raise AssertionError(f"{what}: reconstruct must take (self, update, view, budget=None), "
                                 f"got {signature}") from None
        _check(isinstance(cls.active, bool), f"{what}: active must be a bool, got {cls.active!r}")
        if cls.active:
            _check("modify_model" in cls.requires, f"{what} is active: its requires must include 'modify_model'")

    def _kind_prior(self, cls: type, what: str) -> None:
        _check(callable(getattr(cls, "penalty", None)), f"{what} must implement penalty(inputs, view)")

    def _kind_detector(self, cls: type, what: str) -> None:
        _check(callable(getattr(cls, "score", None)), f"{what} must implement score(model, reference)")

    def _kind_defense(self, cls: type, what: str) -> None:
        _check(cls.stage in DEFENSE_STAGES, f"{what}: stage {cls.stage!r} is none of {', '.join(DEFENSE_STAGES)}")

    def _kind_metric(self, cls: type[Metric], what: str) -> None:
        _check(isinstance(cls.higher_is_better, bool),
               f"{what}: higher_is_better must be a bool, got {cls.higher_is_better!r}")
        for modality_cls in self.reg.components("modality"):
            name = modality_cls.name
            relevant = name in cls.modalities if cls.modalities is not None else name in modality_cls.default_metrics
            cases = [c for c in self.reg.components("case", modality=name) if not c.online_data]
            if relevant and cases:
                try:
                    metric = cls(device="cpu")
                except DependencyMissing as exc:  # an optional package (or local weights) this machine lacks
                    log.warning("%s not checked: %s", what, exc)
                    return
                pair = self._pair(modality_cls(device="cpu"), cases[0])
                self._score(metric, pair, f"{what} on case {cases[0].qualified_name()}")

    def _score(self, metric: Metric, batch: Batch, what: str) -> torch.Tensor | None:
        try:
            values = metric(batch, batch)
        except DependencyMissing as exc:  # an optional package (or local weights) this machine lacks
            log.warning("%s not checked: %s", what, exc)
            return None
        except Exception as exc:
            raise AssertionError(f"{what}: scoring the data against itself raised {type(exc).__name__}: {exc}") from exc
        _check(isinstance(values, torch.Tensor), f"{what} must return a tensor, got {type(values).__name__}")
        _check(tuple(values.shape) == (len(batch),),
               f"{what} must return one value per sample, shape ({len(batch)},), got {tuple(values.shape)}")
        _check(bool(torch.isfinite(values.double()).all()),
               f"{what}: a perfect reconstruction scores {values.tolist()}; values must be finite "
               f"(clamp, never inf/NaN)")
        return values

    def _kind_modality(self, cls: type[Modality], what: str) -> None:
        _check(isinstance(getattr(cls, "primary_metric", None), str), f"{what} must set primary_metric")
        _check(isinstance(cls.success_criterion, str) and cls.success_criterion.strip(),
               f"{what} must state its success_criterion in words")
        metrics = tuple(cls.default_metrics)
        _check(cls.primary_metric in metrics,
               f"{what}: primary_metric {cls.primary_metric!r} must be one of default_metrics {metrics}")
        modality = cls(device="cpu")
        for case_cls in self.reg.components("case", modality=cls.name):
            where = f"{what} with case {case_cls.qualified_name()}"
            data = self._case_data(case_cls)
            if data is None:
                continue
            pair = self._pair(modality, case_cls)
            n = len(pair)
            _check(n == min(2, len(data)), f"{where}: select() of {min(2, len(data))} samples gave {n}")
            parts = [modality.select(pair, torch.tensor([i])) for i in range(n)]
            joined = modality.concat(parts)
            _check(isinstance(joined, Batch) and len(joined) == n,
                   f"{where}: concat(select(...)) of {n} single samples has length {len(joined)}")
            cost = torch.as_tensor(modality.pairwise_cost(pair, pair)).double()
            _check(tuple(cost.shape) == (n, n), f"{where}: pairwise_cost must be ({n}, {n}), got {tuple(cost.shape)}")
            _check(bool(torch.isfinite(cost).all()), f"{where}: pairwise_cost holds inf/NaN: {cost.tolist()}")
            diag, row_min = cost.diagonal(), cost.min(dim=1).values
            _check(bool((diag <= row_min + 1e-6 * (1 + row_min.abs())).all()),
                   f"{where}: pairwise_cost of a batch with itself must be minimal on the diagonal: {cost.tolist()}")
            with tempfile.TemporaryDirectory() as tmp:
                written = modality.save(pair, Path(tmp), "truth")
                _check(isinstance(written, dict) and written, f"{where}: save() must return {{artifact: path}}")
                for key, path in written.items():
                    _check(Path(path).is_file() and Path(tmp).resolve() in Path(path).resolve().parents,
                           f"{where}: save() returned {key}={path!r}, which is no file inside the directory given")
            scores = {}
            for metric_name in metrics:
                metric = self.reg.get("metric", metric_name, modality=cls.name)(device="cpu")
                value = self._score(metric, pair, f"{where}, metric {metric_name}")
                if value is not None:
                    scores[metric_name] = value
            for i in range(n):
                row = {k: float(v[i]) for k, v in scores.items()}
                _check(modality.is_success(row), f"{where}: is_success() rejects a perfect reconstruction {row}")

    def _kind_case(self, cls: type[Case], what: str) -> None:
        _check(isinstance(getattr(cls, "modality", None), str), f"{what} must set modality (a data kind name)")
        self._known_modality(cls.modality, what)
        case = self._new_case(cls)
        data = self._case_data(cls)
        if data is None:
            return
        _check(isinstance(data, Batch),
               f"{what}: load_data(None) must return a gradleak.Batch, got {type(data).__name__}")
        _check(data.modality == cls.modality,
               f"{what}: load_data(None) returned a batch of modality {data.modality!r}, expected {cls.modality!r}")
        _check(len(data) >= 1, f"{what}: load_data(None) returned no samples")
        bs = cls.default_batch_size
        _check(isinstance(bs, int) and 1 <= bs <= len(data),
               f"{what}: default_batch_size {bs!r} must be an int from 1 to the {len(data)} built-in samples")
        _check(cls.num_classes is None or (isinstance(cls.num_classes, int) and cls.num_classes >= 1),
               f"{what}: num_classes must be None or a positive int, got {cls.num_classes!r}")
        models = [case.build_model(torch.Generator().manual_seed(0)) for _ in range(2)]
        states = [m.state_dict() for m in models]
        _check(states[0].keys() == states[1].keys(), f"{what}: build_model gives different parameter names per call")
        differ = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
        _check(not differ, f"{what}: build_model is not deterministic under the same generator seed: {differ[:5]}")
        modality = self._modality_instance(cls.modality)
        if modality is not None:
            pair = self._pair(modality, cls)
            loss = case.loss(case.forward(models[0], pair), pair.labels)
            _check(isinstance(loss, torch.Tensor) and loss.dim() == 0 and math.isfinite(float(loss.detach())),
                   f"{what}: loss(forward(model, batch), labels) must be a finite scalar tensor, got {loss!r}")

    def _new_case(self, cls: type[Case]) -> Any:
        try:
            return cls(make_config(cls.Config, {}, cls.qualified_name()), "cpu")
        except Exception as exc:
            raise AssertionError(f"case {cls.qualified_name()}: constructing it from its defaults raised "
                                 f"{type(exc).__name__}: {exc}") from exc
