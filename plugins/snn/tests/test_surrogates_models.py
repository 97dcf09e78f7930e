"""Surrogate spikes equal snntorch's, the LIF layers follow snntorch's Leaky, and the models are torch.func-ready."""

from __future__ import annotations

import pytest
import snntorch
import torch
from snntorch import surrogate as snn_surrogate
from torch.func import functional_call, grad, vmap

import gradleak
from gradleak_snn.encoding import Encoding
from gradleak_snn.models import SpikingCNN, SpikingMLP, TwinCNN, TwinMLP, init_uniform_
from gradleak_snn.surrogates import SURROGATES, surrogate

REFERENCE = {"fast-sigmoid": snn_surrogate.fast_sigmoid(), "atan": snn_surrogate.atan(),
             "straight-through": snn_surrogate.straight_through_estimator()}


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogates_match_snntorch_forward_and_backward(name):
    u = torch.linspace(-3, 3, 101)
    ours, theirs = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
    a, b = surrogate(name)(ours), REFERENCE[name](theirs)
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)


def test_unknown_surrogate_lists_the_valid_ones():
    with pytest.raises(gradleak.ConfigError, match="fast-sigmoid, atan, straight-through"):
        surrogate("sigmoid")


def test_lif_layer_follows_snntorch_leaky():
    """Our stateless LIF gives snntorch's Leaky membrane and spikes step by step."""
    torch.manual_seed(0)
    enc = Encoding("direct", 6, (1, 4, 4))
    net = SpikingMLP(enc, 3, surrogate("atan"), beta=0.8, hidden=5, output="count")
    x = torch.rand(2, 6, 1, 4, 4) * 3
    ref = snntorch.Leaky(beta=0.8, spike_grad=snn_surrogate.atan())
    mem = ref.init_leaky()
    spikes = []
    for t in range(6):
        s, mem = ref(net.fc1(x[:, t].flatten(1)), mem)
        spikes.append(s)
    mine = torch.zeros(2, 5)
    ours = []
    for t in range(6):
        s, mine = net.lif1(net.fc1(x[:, t].flatten(1)), mine)
        ours.append(s)
    assert torch.equal(torch.stack(ours), torch.stack(spikes)) and torch.stack(spikes).sum() > 0


def test_twins_share_initial_weights_and_deep_copy_after_training():
    enc = Encoding("direct", 3, (1, 28, 28))
    snn = init_uniform_(SpikingCNN(enc, 10, surrogate("fast-sigmoid")), torch.Generator().manual_seed(5))
    ann = init_uniform_(TwinCNN(enc, 10), torch.Generator().manual_seed(5))
    for (n, p), (m, q) in zip(snn.named_parameters(), ann.named_parameters()):
        assert n == m and torch.equal(p, q)
    snn(torch.rand(2, 3, 1, 28, 28)).sum().backward()
    import copy

    copy.deepcopy(snn)  # no graph left on the LIF modules


@pytest.mark.parametrize("output", ["count", "membrane"])
def test_spiking_gradient_is_twice_differentiable_under_vmap(output):
    """The engine's use: vmap over restarts of functional_call, grad of the loss, backward to the input."""
    enc = Encoding("direct", 4, (1, 6, 6))
    net = init_uniform_(SpikingMLP(enc, 3, surrogate("fast-sigmoid"), hidden=16, output=output),
                        torch.Generator().manual_seed(0))
    params = {n: p.detach() for n, p in net.named_parameters()}
    buffers = dict(net.named_buffers())
    y = torch.tensor([1])

    def loss(p, x):
        return torch.nn.functional.cross_entropy(functional_call(net, (p, buffers), (x,)), y)

    x = (torch.rand(3, 1, 4, 1, 6, 6) * 4).requires_grad_(True)
    g = vmap(lambda xi: tuple(grad(loss)(params, xi).values()))(x)
    sum(t.pow(2).sum() for t in g).backward()
    assert g[0].shape == (3, 16, 36) and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    # Each restart's gradient equals plain autograd's.
    direct = torch.autograd.grad(loss({k: v.requires_grad_(True) for k, v in params.items()}, x[1].detach()),
                                 list(params.values()))
    assert torch.allclose(g[0][1], direct[0], atol=1e-6)


def test_ann_twin_on_direct_frames_is_the_static_ann():
    enc = Encoding("direct", 5, (1, 28, 28))
    ann = init_uniform_(TwinMLP(enc, 10), torch.Generator().manual_seed(1))
    image = torch.rand(2, 1, 28, 28)
    frames = image.unsqueeze(1).expand(2, 5, 1, 28, 28)
    assert torch.allclose(ann(frames), ann.frame(image), atol=1e-6)
