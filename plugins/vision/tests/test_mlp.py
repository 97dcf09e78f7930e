"""The ``vision/mlp`` case: a ReLU MLP on the photo crops, deterministic and configurable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradleak
from gradleak_vision.mlp import MLP


def test_mlp_case_builds_the_configured_network():
    p = gradleak.plan("vision/mlp", "analytic-fc", sets={"width": "64", "depth": "3", "activation": "sigmoid"},
                      device="cpu")
    model = p.case.build_model(torch.Generator().manual_seed(0))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3072, 64), (64, 64), (64, 64), (64, 20)]
    assert isinstance(model.layers[1], nn.Sigmoid)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 20)


def test_mlp_init_is_deterministic_and_torch_distributed():
    a = MLP(3072, 20, generator=torch.Generator().manual_seed(3))
    b = MLP(3072, 20, generator=torch.Generator().manual_seed(3))
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), na
    w = a.layers[0].weight.detach()
    bound = 1 / 3072 ** 0.5
    assert float(w.abs().max()) <= bound and float(w.std()) == pytest.approx(bound / 3 ** 0.5, rel=0.02)


def test_mlp_width_must_be_positive():
    with pytest.raises(gradleak.ConfigError, match="width must be >= 1"):
        gradleak.plan("vision/mlp", "analytic-fc", sets={"width": "0"}, device="cpu")
