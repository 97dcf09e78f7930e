"""Models built here for the side-by-side benchmark (no dependencies beyond torch).

``InverseFedConvNet``: the ConvNet of Geiping et al.'s ``inversefed`` and breaching (``ConvNet``, width 64):
conv-BN-ReLU layers of widths w, 2w, 2w, 4w, 4w, 4w, a 3x3 max-pool, two more 4w layers, a 3x3 max-pool and
a linear layer on ``36 w`` features. gradleak's ``vision/convnet`` pools after the 4th layer instead of the
6th (the same parameter shapes, two layers fewer at full resolution), so the benchmark builds this one for
both sides: the same function, the same FLOPs.
"""

from __future__ import annotations

from torch import Tensor, nn


class InverseFedConvNet(nn.Module):
    def __init__(self, width: int = 64, num_classes: int = 10, channels: int = 3) -> None:
        super().__init__()
        w = width
        widths = [channels, w, 2 * w, 2 * w, 4 * w, 4 * w, 4 * w, 4 * w, 4 * w]
        layers: list[nn.Module] = []
        for i in range(8):
            layers += [nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1), nn.BatchNorm2d(widths[i + 1]),
                       nn.ReLU()]
            if i in (5, 7):
                layers.append(nn.MaxPool2d(3))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(36 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))
