"""DLG's LeNet and the lenet case's model and loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradleak_vision.cases import LeNetCase
from gradleak_vision.models import LeNet


def n_params(k: int) -> int:
    return (3 * 12 * 25 + 12) + (12 * 12 * 25 + 12) + (12 * 12 * 25 + 12) + (768 * k + k)


@pytest.mark.parametrize("k", [20, 100])
def test_parameter_count_and_output_shape(k):
    model = LeNet(k, generator=torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in model.parameters()) == n_params(k)
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, k)


def test_layers_and_names_follow_the_dlg_code():
    model = LeNet(100)
    assert list(model.state_dict()) == [f"body.{i}.{w}" for i in (0, 2, 4) for w in ("weight", "bias")] + [
        "fc.0.weight", "fc.0.bias"]
    convs = [model.body[i] for i in (0, 2, 4)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1)] and all(c.padding == (2, 2) for c in convs)
    assert all(isinstance(model.body[i], torch.nn.Sigmoid) for i in (1, 3, 5))


def test_initialisation_is_uniform_and_deterministic_under_the_generator():
    state = torch.get_rng_state()
    a = LeNet(20, generator=torch.Generator().manual_seed(7))
    b = LeNet(20, generator=torch.Generator().manual_seed(7))
    c = LeNet(20, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    for pa, pb, pc in zip(a.state_dict().values(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
        assert float(pa.min()) >= -0.5 and float(pa.max()) <= 0.5
    weights = torch.cat([p.flatten() for p in a.state_dict().values()])
    assert abs(float(weights.mean())) < 0.02 and abs(float(weights.var()) - 1 / 12) < 0.01  # U(-0.5, 0.5)


def test_case_model_and_loss():
    case = LeNetCase(device="cpu")
    model = case.build_model(torch.Generator().manual_seed(0))
    assert next(model.parameters()).device.type == "cpu"
    out = model(torch.rand(3, 3, 32, 32))
    ids = torch.tensor([0, 5, 19])
    assert torch.isclose(case.loss(out, ids), F.cross_entropy(out, ids))
    assert torch.isclose(case.loss(out, F.one_hot(ids, case.num_classes).float()), case.loss(out, ids))
    with pytest.raises(ValueError):
        case.loss(out, None)
