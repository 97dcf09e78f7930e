"""The ``vision/mlp`` case (a ReLU MLP), the model of the exact linear-layer attacks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from gradleak import param
from gradleak.config import require_count

from .cases import LeNetCase, LeNetConfig

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky-relu": nn.LeakyReLU}


class MLP(nn.Module):
    """A fully connected classifier on flattened images: ``depth`` hidden layers of ``width`` units.

    ``layers`` is ``Linear(in, width), act, Linear(width, width), act, ..., Linear(width, classes)``, so the
    first layer (``layers.0``) sees the raw pixels and is followed by the activation (``layers.1``). With a
    ``generator``, every weight and bias is drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch's default
    ``nn.Linear`` distribution) from that generator, in parameter order; the global RNG is never touched.
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 2,
                 activation: str = "relu", generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        where = torch.device("meta") if generator is not None else device
        act = _ACTIVATIONS[activation]
        sizes = [in_features] + [width] * depth
        modules: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            modules += [nn.Linear(a, b, device=where), act()]
        modules.append(nn.Linear(sizes[-1], num_classes, device=where))
        self.layers = nn.Sequential(*modules)
        if generator is not None:
            self.to_empty(device=generator.device)
            with torch.no_grad():
                for m in self.layers:
                    if isinstance(m, nn.Linear):
                        bound = 1.0 / math.sqrt(m.in_features)
                        m.weight.uniform_(-bound, bound, generator=generator)
                        m.bias.uniform_(-bound, bound, generator=generator)
            if device is not None:
                self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


@dataclass(frozen=True)
class MLPConfig(LeNetConfig):
    width: int = param(256, "units per hidden layer")
    depth: int = param(2, "hidden layers")
    activation: Literal["relu", "sigmoid", "tanh", "leaky-relu"] = param("relu", "hidden activation")

    def validate(self, owner: str) -> None:
        super().validate(owner)
        require_count(self, owner, "width", "depth")


class MLPCase(LeNetCase):
    """A ReLU MLP (3072 -> 256 -> 256 -> 20 by default) on 32x32 RGB photo crops, cross-entropy loss.

    The fully connected ReLU networks of the exact attacks: the first layer's weight and bias gradients reveal
    single inputs (Phong et al. 2017; Geiping et al. 2020, Sec. 4) and, through the ReLU's sparsity, whole
    batches (Dimitrov et al., "SPEAR: Exact Gradient Inversion of Batches in Federated Learning", NeurIPS
    2024, who attack FC ReLU networks of widths 200-2000). Same data as ``vision/lenet`` (the built-in photo
    crops, ``--data`` folders or ``.npy``; public crops sharing no pixel with the private ones). ``--set
    width=, depth=, activation=relu|sigmoid|tanh|leaky-relu`` change the network.
    """

    name = "mlp"
    Config = MLPConfig
    paper = "Dimitrov et al., SPEAR: Exact Gradient Inversion of Batches in Federated Learning, NeurIPS 2024"

    def build_model(self, generator: torch.Generator) -> nn.Module:
        c = self.config
        return MLP(math.prod(self.sample_shape), self.num_classes, width=c.width, depth=c.depth,
                   activation=c.activation, generator=generator, device=self.device)


#: The cases this module registers.
CASES = [MLPCase]
