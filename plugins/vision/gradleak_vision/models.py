"""Image classifiers attacked by the vision cases."""

from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    """The LeNet of Deep Leakage from Gradients (Zhu, Liu, Han, NeurIPS 2019; mit-han-lab/dlg models/vision.py).

    Three 5x5 convolutions (12 channels, padding 2, strides 2, 2, 1), each followed by a sigmoid, then one linear
    layer from the flattened ``12 x 8 x 8 = 768`` features onto the classes; no pooling, so the model is
    twice differentiable everywhere and its first layers leak the input almost exactly. Parameter names
    (``body.0.weight`` ... ``fc.0.bias``) are those of the DLG code.

    With a ``generator``, every weight and bias is drawn from ``U(-0.5, 0.5)`` as DLG's ``weights_init`` does
    (in parameter order, which is the order of ``net.apply(weights_init)``), but from that generator, so the
    model is reproducible; the global RNG is never touched. Without one, torch's default initialisation is used.
    """

    def __init__(
        self,
        num_classes: int = 100,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        # Build on the meta device when we initialise ourselves: torch's default init would consume the global RNG.
        where = torch.device("meta") if generator is not None else device
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, kernel_size=5, padding=2, stride=2, device=where),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2, device=where),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1, device=where),
            nn.Sigmoid(),
        )
        self.fc = nn.Sequential(nn.Linear(768, num_classes, device=where))
        if generator is not None:
            self.to_empty(device=generator.device)
            dlg_init_(self, generator)
            if device is not None:
                self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return self.fc(out.flatten(1))


def dlg_init_(model: nn.Module, generator: torch.Generator, bound: float = 0.5) -> nn.Module:
    """Draw every parameter of ``model`` from ``U(-bound, bound)`` with ``generator`` (DLG's ``weights_init``)."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-bound, bound, generator=generator)
    return model
