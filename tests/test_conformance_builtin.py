"""The conformance kit: gradleak's own built-in plugin passes it, and it rejects broken components with a
message naming the component and the rule. A toy in-process plugin exercises the data-level checks
(modality round trips, case determinism, metric scoring) without any installed plugin."""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import gradleak
from gradleak.builtin.defenses import NoDefense
from gradleak.testing import check_component, check_plugin


def test_builtin_alone(monkeypatch):
    monkeypatch.setenv("GRADLEAK_LOAD_PLUGINS", "")  # only the built-in plugin: what a bare core install has
    check_plugin("builtin")


def test_builtin_with_installed_plugins(monkeypatch):
    for var in ("GRADLEAK_LOAD_PLUGINS", "GRADLEAK_DISABLE_PLUGINS", "GRADLEAK_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    check_plugin("builtin")  # generic components checked against the modalities and cases really installed


def test_unknown_plugin_is_reported(monkeypatch):
    monkeypatch.setenv("GRADLEAK_LOAD_PLUGINS", "")
    with pytest.raises(AssertionError, match="no plugin named 'nope'"):
        check_plugin("nope")


# ------------------------------------------------------------------------------------------ a toy plugin

class ToyModality(gradleak.Modality):
    """Vectors of four numbers (a toy data kind for the conformance tests)."""

    name = "toy"
    primary_metric = "toy_mse"
    default_metrics = ("toy_mse", "label_acc")
    success_criterion = "toy_mse below 0.01"

    def is_success(self, metrics):
        return metrics["toy_mse"] < 0.01

    def pairwise_cost(self, recon, truth):
        return torch.cdist(recon.data, truth.data)

    def select(self, batch, index):
        return batch.replace(data=batch.data[index], labels=batch.labels[index])

    def concat(self, batches):
        return gradleak.Batch(torch.cat([b.data for b in batches]), torch.cat([b.labels for b in batches]), "toy")

    def save(self, batch, directory: Path, stem):
        path = directory / f"{stem}.json"
        path.write_text(json.dumps(batch.data.tolist()))
        return {stem: str(path)}


class ToyCase(gradleak.Case):
    """A linear classifier on toy vectors."""

    name = "linear"
    modality = "toy"
    num_classes = 3

    def build_model(self, generator):
        model = torch.nn.Linear(4, 3)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        return model

    def loss(self, outputs, labels):
        return torch.nn.functional.cross_entropy(outputs, labels)

    def load_data(self, path):
        return gradleak.Batch(torch.arange(20.0).reshape(5, 4) / 20, torch.tensor([0, 1, 2, 0, 1]), "toy")


class ToyMSE(gradleak.Metric):
    """Mean squared error per sample."""

    name = "toy_mse"
    modalities = frozenset({"toy"})
    higher_is_better = False

    def __call__(self, recon, truth):
        return (recon.data - truth.data).pow(2).mean(1)


def toy_registry(*extra: type) -> gradleak.Registry:
    module = types.ModuleType("toy_plugin")

    @gradleak.hookimpl
    def register_modalities(register):
        register(ToyModality)

    @gradleak.hookimpl
    def register_cases(register):
        register(ToyCase)

    @gradleak.hookimpl
    def register_metrics(register):
        register(ToyMSE)

    module.register_modalities, module.register_cases, module.register_metrics = (
        register_modalities, register_cases, register_metrics)
    return gradleak.Registry(entry_points=False, extra=[("toy", module)])


def test_toy_plugin_passes():
    reg = toy_registry()
    assert reg.infos["toy"].status == "ok", reg.infos["toy"].error
    check_plugin("toy", registry=reg)
    check_plugin("builtin", registry=reg)  # label_acc is scored on the toy case: a default metric of "toy"


# ------------------------------------------------------------------------------------------ broken components

class GoodAttack(gradleak.Attack):
    """A well-formed attack."""

    name = "good-attack"
    modalities = frozenset({"toy"})

    def reconstruct(self, update, view, budget=None):
        raise NotImplementedError


def variant(base: type, **attrs) -> type:
    attrs.setdefault("__doc__", base.__doc__)
    return type(base.__name__, (base,), attrs)


@dataclass(frozen=True)
class NeedsValue:
    value: float


class Unfinished(gradleak.Attack):
    """Forgets to implement reconstruct."""

    name = "unfinished"


def nondeterministic_model(self, generator):
    return torch.nn.Linear(4, 3)  # ignores the generator


BROKEN = [
    (variant(ToyMSE, higher_is_better="yes"), "higher_is_better must be a bool"),
    (variant(ToyMSE, name="toy-mse"), "must be snake_case"),
    (variant(GoodAttack, name="Good_Attack"), "must be kebab-case"),
    (variant(GoodAttack, __doc__=None), "needs a docstring"),
    (variant(GoodAttack, requires=frozenset({"root"})), r"unknown capabilities \['root'\]"),
    (variant(GoodAttack, modalities=frozenset({"imgae"})), "names modality 'imgae'"),
    (variant(GoodAttack, Config=NeedsValue), "Config\\(\\) must build from defaults"),
    (variant(GoodAttack, active=True), "must include 'modify_model'"),
    (variant(GoodAttack, reconstruct=lambda self, update: None), "reconstruct must take"),
    (Unfinished, "abstract methods unimplemented: reconstruct"),
    (variant(NoDefense, stage="post"), "stage 'post' is none of data, model, train, update"),
    (variant(ToyMSE, __call__=lambda self, r, t: torch.full((len(t),), float("inf"))), "must be finite"),
    (variant(ToyMSE, __call__=lambda self, r, t: torch.zeros(())), "one value per sample"),
    (variant(ToyCase, build_model=nondeterministic_model), "not deterministic"),
    (variant(ToyCase, load_data=lambda self, path: gradleak.Batch(torch.zeros(2, 4), torch.zeros(2).long(), "image")),
     "modality 'image', expected 'toy'"),
    (variant(ToyModality, pairwise_cost=lambda self, r, t: torch.eye(len(r))), "minimal on the diagonal"),
    (variant(ToyModality, is_success=lambda self, m: False), "rejects a perfect reconstruction"),
    (variant(ToyModality, save=lambda self, b, d, s: {"truth": "/nonexistent.npy"}), "no file inside"),
]


def test_good_component_passes():
    check_component(GoodAttack, toy_registry())


@pytest.mark.parametrize("cls, message", BROKEN, ids=[f"{c.kind}-{i}" for i, (c, _) in enumerate(BROKEN)])
def test_broken_component_fails_clearly(cls, message):
    reg = toy_registry()
    with pytest.raises(AssertionError, match=message) as info:
        check_component(cls, reg)
    text = str(info.value)
    assert re.search(r"^(attack|metric|case|modality|defense) '", text), text  # names the component first
