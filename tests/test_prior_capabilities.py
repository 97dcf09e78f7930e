"""A prior's capabilities are checked with its attack's, before any compute."""

from __future__ import annotations

import types

import pytest
import torch

import gradleak
from gradleak import Attack, Prior, hookimpl


class BatchNormStatistics(Prior):
    """Needs the client's BatchNorm statistics (as Yin et al.'s prior does)."""

    name = "bn-needing"
    requires = frozenset({"bn_stats"})

    def penalty(self, inputs, view):
        return inputs.new_zeros(inputs.shape[0])


class UsesThePrior(Attack):
    """An attack whose objective includes the prior above."""

    name = "uses-prior"
    modalities = frozenset({"image"})
    priors = (BatchNormStatistics,)

    def reconstruct(self, update, view, budget=None):
        x = torch.zeros(view.batch_size, *view.sample_shape, device=view.device)
        return gradleak.Reconstruction(view.modality.search_space(view).to_batch(x, view.labels))


def _registry() -> gradleak.Registry:
    module = types.ModuleType("prior_caps")

    @hookimpl
    def register_attacks(register):
        register(UsesThePrior)

    @hookimpl
    def register_priors(register):
        register(BatchNormStatistics)

    module.register_attacks = register_attacks
    module.register_priors = register_priors
    return gradleak.Registry(extra=[("caps", module)])


def test_missing_prior_capability_is_refused_naming_the_prior():
    reg = _registry()
    with pytest.raises(gradleak.CapabilityError, match=r"prior 'bn-needing'.*'bn_stats'.*--set bn_stats=known"):
        gradleak.plan("vision/lenet", "uses-prior", device="cpu", reg=reg)
    plan = gradleak.plan("vision/lenet", "uses-prior", device="cpu", sets={"bn_stats": "known"}, reg=reg)
    assert plan.attack.name == "uses-prior"
