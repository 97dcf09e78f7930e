"""The ConvNet, ResNet and ViT models of the vision cases."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

from gradleak_vision.convnet import ConvNet
from gradleak_vision.init import build_seeded
from gradleak_vision.resnet import BasicBlock, PreActBlock, ResNet, resnet18
from gradleak_vision.vit import ViT

pytestmark = pytest.mark.usefixtures("single_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_convnet_follows_inversefed():
    model = ConvNet(width=64, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 128, 256, 256, 256, 256, 256]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 8
    assert model.fc.in_features == 36 * 64  # two 3x3 max-pools leave 3x3 maps of 4w channels
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert ConvNet(4, 10, channels=1, size=28)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_resnet18_is_the_cifar_variant():
    model = resnet18(10)
    assert 11.1e6 < n_params(model) < 11.2e6  # the CIFAR ResNet-18's 11.17M parameters
    assert model.stem.kernel_size == (3, 3) and model.stem.stride == (1, 1)
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("preact", [True, False])
@pytest.mark.parametrize("skips", [True, False])
def test_configurable_resnet(preact, skips):
    model = ResNet((1, 2), width=4, num_classes=5, preact=preact, skips=skips)
    blocks = [m for m in model.modules() if isinstance(m, (PreActBlock, BasicBlock))]
    assert len(blocks) == 3 and all(isinstance(b, PreActBlock) == preact for b in blocks)
    assert model.fc.in_features == 8
    x = torch.rand(3, 3, 32, 32)
    out = model(x)
    assert out.shape == (3, 5)
    # Without skips a block's output does not depend on its input through an identity path.
    assert all(b.skips == skips for b in blocks)


def test_preact_block_adds_its_input():
    block = PreActBlock(4, 4, stride=1, skips=True).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), x)  # conv2 = 0 leaves the identity path


def test_vit_tiny_shape_and_double_backward():
    vit = ViT(10)
    assert 5.3e6 < n_params(vit) < 5.4e6  # ViT-Ti's ~5.4M at 64 tokens
    small = ViT(10, dim=24, depth=1, heads=3)
    params = {n: p.detach() for n, p in small.named_parameters()}
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    g = grad(lambda p, x: functional_call(small, p, (x,)).pow(2).mean())(params, x)
    sum(v.sum() for v in g.values()).backward()  # gradient matching differentiates the gradient
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_seeded_build_is_deterministic_and_leaves_the_global_rng():
    state = torch.get_rng_state()
    a = build_seeded(lambda: ConvNet(4), torch.Generator().manual_seed(3))
    b = build_seeded(lambda: ConvNet(4), torch.Generator().manual_seed(3))
    c = build_seeded(lambda: ConvNet(4), torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.fc.weight, c.fc.weight)
