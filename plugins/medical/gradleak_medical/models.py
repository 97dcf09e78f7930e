"""Encoder-classifier networks for biomedical patches: ``head(encoder(x))`` with a ``latent``-sized code.

The explicit ``encoder``/``head`` split is what the latent-perturbation defense needs (it perturbs the code
between them); the attacks see an ordinary classifier.
"""

from __future__ import annotations

import torch
from torch import nn


class EncoderClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _init(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Deterministic initialisation from ``generator``: uniform(-0.5, 0.5) like DLG's LeNet (leakage-friendly)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, device=p.device) - 0.5)
    return module


def patch_cnn(num_classes: int, latent: int = 64, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> EncoderClassifier:
    """Three sigmoid convolutions (LeNet-style, as in DLG) and a linear code of size ``latent``; 32x32 input."""
    encoder = nn.Sequential(
        nn.Conv2d(3, 12, 5, padding=2, stride=2), nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, padding=2, stride=2), nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, padding=2, stride=1), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(12 * 8 * 8, latent), nn.Sigmoid(),
    )
    model = EncoderClassifier(encoder, nn.Linear(latent, num_classes)).to(device)
    return _init(model, generator) if generator is not None else model


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


def patch_resnet(num_classes: int, width: int = 16, latent: int = 64, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> EncoderClassifier:
    """A small ResNet (stem, two basic blocks, BatchNorm) with a ``latent`` code; PyTorch's default init,
    drawn from ``generator``."""
    if generator is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator, device=generator.device)))
            return patch_resnet(num_classes, width, latent, None, device)
    encoder = nn.Sequential(
        nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        _Block(width, width, 1), _Block(width, 2 * width, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, latent), nn.ReLU(),
    )
    return EncoderClassifier(encoder, nn.Linear(latent, num_classes)).to(device)
