"""Spiking networks of leaky integrate-and-fire neurons (snntorch) and their ANN twins.

Every network takes the encoded input ``(N, T, C, H, W)`` alone (so ``torch.func.functional_call`` and
``vmap`` see a plain function of one tensor) and returns class logits ``(N, K)``. Each carries the
:class:`~gradleak_snn.encoding.Encoding` of its input as ``model.encoding``: the spike modality reads it to
build the attacker's search space.

LIF dynamics (snntorch ``Leaky``, reset by subtraction, reset detached as in snntorch):
``U[t] = beta U[t-1] + I[t] - S[t-1] theta``, ``S[t] = H(U[t] - theta)``, with the surrogate derivative of
:mod:`gradleak_snn.surrogates` in the backward pass. Membrane states are locals of ``forward`` (``init_hidden``
is off), so the network is a pure function of its parameters and input.

The output is either the spike count of the output layer (``output="count"``, logits ``sum_t S[t]``) or its
membrane potential (``output="membrane"``: the output layer integrates without firing or reset, logits
``mean_t U[t]``), fed to cross-entropy.

The ANN twin has the same layers with ReLU in place of every LIF layer and no state across steps: it maps
each frame on its own and averages the logits over the T frames. For direct encoding (T identical frames) it
is exactly the static ANN on the image; for spike encodings it sees the same spike frames as the SNN, so the
comparison isolates the spiking dynamics.
"""

from __future__ import annotations

import math
from typing import Literal

import snntorch
import torch
from torch import nn

from .encoding import Encoding
from .surrogates import SpikeFn

Output = Literal["count", "membrane"]


class LIF(snntorch.Leaky):
    """snntorch's ``Leaky`` with the state kept out of the module between calls.

    ``Leaky`` stores the last membrane on ``self.mem`` even with ``init_hidden=False``; a graph (or a batched
    tensor under ``vmap``) left there would make the model impossible to deep-copy and leak memory, so it is
    dropped after each step. The caller carries the state.
    """

    def forward(self, current: torch.Tensor, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spk, mem = super().forward(current, mem)
        self.mem = torch.zeros(0, device=current.device, dtype=current.dtype)
        self.reset = None
        return spk, mem


def _lif(beta: float, spike_fn: SpikeFn, output: bool = False) -> LIF:
    # The output layer of a membrane readout integrates without firing back (no reset).
    return LIF(beta=beta, spike_grad=spike_fn, init_hidden=False, reset_mechanism="none" if output else "subtract")


class _Spiking(nn.Module):
    """The time loop shared by the spiking networks: ``stages`` are (synapse, LIF) pairs, the last is the readout."""

    def __init__(self, encoding: Encoding, output: Output) -> None:
        super().__init__()
        self.encoding = encoding
        self.output = output

    def stages(self) -> list[tuple[nn.Module, LIF]]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = self.stages()
        mems: list[torch.Tensor | None] = [None] * len(stages)
        logits = None
        for t in range(x.shape[1]):
            h = x[:, t]
            for i, (synapse, lif) in enumerate(stages):
                current = synapse(h)
                mem = mems[i] if mems[i] is not None else torch.zeros_like(current)
                h, mems[i] = lif(current, mem)
            readout = h if self.output == "count" else mems[-1]
            logits = readout if logits is None else logits + readout
        assert logits is not None
        return logits if self.output == "count" else logits / x.shape[1]


class SpikingMLP(_Spiking):
    """Two fully connected LIF layers: input -> ``hidden`` LIF -> classes LIF."""

    def __init__(self, encoding: Encoding, num_classes: int, spike_fn: SpikeFn, beta: float = 0.9,
                 hidden: int = 128, output: Output = "count") -> None:
        super().__init__(encoding, output)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(math.prod(encoding.frame_shape), hidden)
        self.lif1 = _lif(beta, spike_fn)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.lif2 = _lif(beta, spike_fn, output=output == "membrane")

    def stages(self) -> list[tuple[nn.Module, LIF]]:
        return [(nn.Sequential(self.flatten, self.fc1), self.lif1), (self.fc2, self.lif2)]


def _conv_out(size: int) -> int:
    return (size + 2 * 2 - 5) // 2 + 1


class SpikingCNN(_Spiking):
    """Two 5x5 stride-2 convolutions (``channels``), each into LIF neurons, then a linear LIF readout."""

    def __init__(self, encoding: Encoding, num_classes: int, spike_fn: SpikeFn, beta: float = 0.9,
                 channels: tuple[int, int] = (8, 16), output: Output = "count") -> None:
        super().__init__(encoding, output)
        c, h, w = encoding.frame_shape
        self.conv1 = nn.Conv2d(c, channels[0], 5, stride=2, padding=2)
        self.lif1 = _lif(beta, spike_fn)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5, stride=2, padding=2)
        self.lif2 = _lif(beta, spike_fn)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels[1] * _conv_out(_conv_out(h)) * _conv_out(_conv_out(w)), num_classes)
        self.lif3 = _lif(beta, spike_fn, output=output == "membrane")

    def stages(self) -> list[tuple[nn.Module, LIF]]:
        return [(self.conv1, self.lif1), (self.conv2, self.lif2), (nn.Sequential(self.flatten, self.fc), self.lif3)]


class _Twin(nn.Module):
    """The ANN twin's frame-wise evaluation: fold time into the batch, average the logits over frames."""

    def __init__(self, encoding: Encoding) -> None:
        super().__init__()
        self.encoding = encoding

    def frame(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, steps = x.shape[0], x.shape[1]
        return self.frame(x.flatten(0, 1)).reshape(n, steps, -1).mean(1)


class TwinMLP(_Twin):
    """The ANN twin of :class:`SpikingMLP`: the same two linear layers, ReLU in between."""

    def __init__(self, encoding: Encoding, num_classes: int, hidden: int = 128) -> None:
        super().__init__(encoding)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(math.prod(encoding.frame_shape), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def frame(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))


class TwinCNN(_Twin):
    """The ANN twin of :class:`SpikingCNN`: the same convolutions and linear layer, ReLU after each convolution."""

    def __init__(self, encoding: Encoding, num_classes: int, channels: tuple[int, int] = (8, 16)) -> None:
        super().__init__(encoding)
        c, h, w = encoding.frame_shape
        self.conv1 = nn.Conv2d(c, channels[0], 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5, stride=2, padding=2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels[1] * _conv_out(_conv_out(h)) * _conv_out(_conv_out(w)), num_classes)

    def frame(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(torch.relu(self.conv2(torch.relu(self.conv1(x))))))


def init_uniform_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default ranges, drawn from ``generator``: every weight and bias of a linear or convolution
    layer from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. The SNN and its twin built from the same generator
    get identical weights; the global RNG is never touched."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
    return model
