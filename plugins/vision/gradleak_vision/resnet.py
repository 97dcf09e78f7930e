"""Residual networks for 32x32 images: the CIFAR ResNet-18 and a configurable pre-activation ResNet.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (post-activation blocks:
conv-BN-ReLU-conv-BN, add, ReLU) and "Identity Mappings in Deep Residual Networks", ECCV 2016
(pre-activation blocks: BN-ReLU-conv-BN-ReLU-conv, add). The CIFAR variant starts with one 3x3 convolution
(no 7x7 stem, no max-pool), has four stages of ``width * (1, 2, 4, 8)`` channels with stride 2 from the
second on, global average pooling and one linear layer. ``skips=False`` removes the residual additions (a
plain network of the same layers), as the feasibility study of Valadi et al. needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F


def _conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation residual block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``."""

    def __init__(self, c_in: int, c_out: int, stride: int, skips: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.skips = skips
        self.shortcut = nn.Sequential()
        if skips and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.skips:
            out = out + self.shortcut(x)
        return F.relu(out)


class PreActBlock(nn.Module):
    """Pre-activation residual block: ``conv(relu(bn(conv(relu(bn(x)))))) + shortcut(x)``."""

    def __init__(self, c_in: int, c_out: int, stride: int, skips: bool) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv3(c_in, c_out, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), _conv3(c_out, c_out)
        self.skips = skips
        self.shortcut: nn.Module | None = None
        if skips and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        if self.skips:
            # The projection reads the normalised input, as in the identity-mappings paper's code.
            out = out + (self.shortcut(pre) if self.shortcut is not None else x)
        return out


class ResNet(nn.Module):
    """A CIFAR ResNet: 3x3 stem, ``len(blocks)`` stages of ``blocks[i]`` residual blocks, average pool, linear.

    ``width`` is the stem's channel count (64 for ResNet-18); stage ``i`` has ``width * 2**i`` channels and
    stride 2 from the second stage on. ``preact`` picks pre-activation blocks (with a final BN-ReLU before
    pooling) instead of post-activation ones (with BN-ReLU after the stem).
    """

    def __init__(self, blocks: Sequence[int] = (2, 2, 2, 2), width: int = 64, num_classes: int = 10,
                 channels: int = 3, preact: bool = False, skips: bool = True) -> None:
        super().__init__()
        if not blocks or min(blocks) < 1 or width < 1:
            raise ValueError(f"ResNet needs at least one stage of >= 1 block and width >= 1, got {blocks}, {width}")
        self.preact = preact
        self.stem = _conv3(channels, width)
        self.stem_bn = None if preact else nn.BatchNorm2d(width)
        block = PreActBlock if preact else BasicBlock
        layers: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                layers.append(block(c_in, c_out, 2 if (i > 0 and j == 0) else 1, skips))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.final_bn = nn.BatchNorm2d(c_in) if preact else None
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stem(x)
        if self.stem_bn is not None:
            out = F.relu(self.stem_bn(out))
        out = self.layers(out)
        if self.final_bn is not None:
            out = F.relu(self.final_bn(out))
        return self.fc(out.mean((2, 3)))  # global average pool (vmap-friendly)


def resnet18(num_classes: int = 10, channels: int = 3, width: int = 64) -> ResNet:
    """The CIFAR ResNet-18 (about 11.2M parameters at width 64)."""
    return ResNet((2, 2, 2, 2), width=width, num_classes=num_classes, channels=channels)
