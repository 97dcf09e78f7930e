"""The ConvNet of Inverting Gradients (Geiping et al., NeurIPS 2020), width configurable."""

from __future__ import annotations

from torch import Tensor, nn


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class ConvNet(nn.Module):
    """Eight 3x3 conv-BN-ReLU layers (widths w, 2w, 2w, 4w, 4w, 4w | 4w, 4w) with a 3x3 max-pool after the
    6th and the 8th, then one linear layer.

    Geiping, Bauermeister, Droege, Moeller, "Inverting Gradients", NeurIPS 2020 (``inversefed.nn.models.ConvNet``;
    the paper's "ConvNet-64" is ``width=64``). On 32x32 (or 28x28) inputs the pools leave 3x3 maps, so the
    classifier reads ``36 * width`` features; other sizes are handled by the flattened size computed here.
    """

    def __init__(self, width: int = 64, num_classes: int = 10, channels: int = 3, size: int = 32) -> None:
        super().__init__()
        w = width
        widths = [channels, w, 2 * w, 2 * w, 4 * w, 4 * w, 4 * w, 4 * w, 4 * w]
        layers: list[nn.Module] = []
        for i in range(8):
            layers += _block(widths[i], widths[i + 1])
            if i in (5, 7):  # inversefed: pool0 after conv5, pool1 after conv7
                layers.append(nn.MaxPool2d(3))
        self.features = nn.Sequential(*layers)
        side = (size // 3) // 3
        if side < 1:
            raise ValueError(f"ConvNet needs images of at least 9x9 pixels, got {size}x{size}")
        self.fc = nn.Linear(4 * w * side * side, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))
