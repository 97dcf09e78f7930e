"""The ``spikes`` modality: inputs of spiking networks, ``(N, T, C, H, W)`` frames with their encoding.

``Batch.data`` is a :class:`SpikeTrain`: the tensor the network consumed (currents for direct encoding, 0/1
spikes otherwise) plus the name of its encoding, which says how to decode it into an image for the image
metrics. Generic optimization attacks search one of two spaces, chosen from ``view.model.encoding``:

- :class:`RelaxedImageSpace` (direct, rate, latency): a candidate image, relaxed into an input by
  :func:`gradleak_snn.encoding.relax` (currents, expected rates, interpolated latencies);
- :class:`SpikeTensorSpace` (events, and ``spike-dlg`` on every encoding): the spike tensor itself,
  ``sigmoid(z)`` in ``[0, 1]^{T x C x H x W}`` (the relaxed spike tensor), or straight-through hard spikes
  (``spike-dlg``), or free per-step currents for direct encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradleak import Batch, IncompatibleError, Modality, SearchSpace
from gradleak_vision.modality import image_grid

from .encoding import Encoding, decode_image, relax

if TYPE_CHECKING:
    from gradleak import AttackerView

#: A decoded reconstruction counts as successful from this PSNR on (dB, data range 1), as for images.
SUCCESS_PSNR_DB = 20.0


@dataclass(frozen=True)
class SpikeTrain:
    """Network inputs ``spikes`` ``(N, T, *frame)`` and their ``encoding`` (direct, rate, latency, events)."""

    spikes: torch.Tensor
    encoding: str

    def __len__(self) -> int:
        return int(self.spikes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.spikes.device

    def to(self, device: torch.device | str) -> SpikeTrain:
        return SpikeTrain(self.spikes.to(device), self.encoding)

    def images(self) -> torch.Tensor:
        """The decoded images ``(N, C, H, W)`` in ``[0, 1]`` (see :func:`decode_image`)."""
        return decode_image(self.spikes, self.encoding)


def spike_batch(spikes: torch.Tensor, labels: torch.Tensor | None, encoding: str) -> Batch:
    return Batch(SpikeTrain(spikes, encoding), labels, "spikes")


def model_encoding(view: AttackerView) -> Encoding:
    encoding = getattr(view.model, "encoding", None)
    if not isinstance(encoding, Encoding):
        raise IncompatibleError("the spikes modality needs a model carrying its input encoding (model.encoding); "
                                "use an snn/* case")
    return encoding


class RelaxedImageSpace(SearchSpace):
    """A candidate image ``z`` ``(R, B, C, H, W)``, decoded by the encoding's relaxation to ``(R, B, T, C, H, W)``;
    with ``boxed``, ``z`` is clamped to ``[0, 1]`` after each step."""

    def __init__(self, encoding: Encoding, boxed: bool = True) -> None:
        self.encoding = encoding
        self.boxed = boxed

    def init(self, restarts: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        shape = (restarts, batch_size, *self.encoding.frame_shape)
        return torch.randn(shape, generator=generator, device=generator.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return relax(z, self.encoding)

    def project(self, z: torch.Tensor) -> None:
        if self.boxed:
            with torch.no_grad():
                z.clamp_(0.0, 1.0)

    def to_batch(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> Batch:
        return spike_batch(inputs, labels, self.encoding.kind)


class SpikeTensorSpace(SearchSpace):
    """The input tensor itself, ``z`` ``(R, B, T, C, H, W)``.

    Binary encodings: ``sigmoid(z)`` (a relaxed spike tensor), or with ``hard`` the 0/1 spikes ``H(z)`` carrying
    the gradient of ``sigmoid(z)`` (straight-through, as a surrogate gradient does). Direct encoding: free
    currents per step, clamped to ``[0, 1]`` when ``boxed``.
    """

    def __init__(self, encoding: Encoding, boxed: bool = True, hard: bool = False) -> None:
        self.encoding = encoding
        self.boxed = boxed
        self.hard = hard

    def init(self, restarts: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        shape = (restarts, batch_size, *self.encoding.sample_shape)
        return torch.randn(shape, generator=generator, device=generator.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if not self.encoding.binary:
            return z
        soft = torch.sigmoid(z)
        if not self.hard:
            return soft
        return (z > 0).to(z.dtype) + (soft - soft.detach())

    def project(self, z: torch.Tensor) -> None:
        if self.boxed and not self.encoding.binary:
            with torch.no_grad():
                z.clamp_(0.0, 1.0)

    def to_batch(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> Batch:
        return spike_batch(inputs, labels, self.encoding.kind)


class Spikes(Modality):
    """Spiking-network inputs (N, T, C, H, W) with their encoding; scored on the decoded images plus spike metrics.

    Image metrics (PSNR, SSIM, MSE) compare decoded images (time mean; latency: first-spike intensity; events:
    per-polarity event rate). ``temporal_consistency`` and ``spike_f1`` compare the frames themselves.
    Reconstructions are matched to the truth by minimum total MSE of the decoded images, saved as
    ``truth.npy``/``recon.npy`` (N, T, C, H, W float32 clipped to [0, 1]) and drawn as ``grid.png`` (decoded
    truth on top, decoded reconstruction below). A sample is a success at PSNR >= 20 dB of the decoded image.
    """

    name = "spikes"
    primary_metric = "psnr"
    default_metrics = ("psnr", "ssim", "mse", "temporal_consistency", "spike_f1", "label_acc")
    success_criterion = f"PSNR >= {SUCCESS_PSNR_DB:g} dB on the decoded input"

    def is_success(self, metrics: Mapping[str, float]) -> bool:
        return float(metrics["psnr"]) >= SUCCESS_PSNR_DB

    def search_space(self, view: AttackerView, boxed: bool = True) -> SearchSpace:
        encoding = model_encoding(view)
        if encoding.kind == "events":
            return SpikeTensorSpace(encoding, boxed=boxed)
        return RelaxedImageSpace(encoding, boxed=boxed)

    def pairwise_cost(self, recon: Batch, truth: Batch) -> torch.Tensor:
        """``cost[i, j]`` = MSE between the decoded images of reconstruction ``i`` and truth ``j``."""
        t = truth.data.images().detach().flatten(1).float()
        r = recon.data.images().detach().to(t.device).flatten(1).float()
        if r.shape[1] != t.shape[1]:
            raise ValueError(f"reconstructed spike trains {tuple(recon.data.spikes.shape[1:])} do not have the "
                             f"shape of the true ones {tuple(truth.data.spikes.shape[1:])}")
        return torch.cdist(r.double(), t.double()).pow(2).float() / max(1, t.shape[1])

    def select(self, batch: Batch, index: torch.Tensor) -> Batch:
        data: SpikeTrain = batch.data
        spikes = data.spikes[index.to(data.spikes.device)]
        labels = batch.labels_at(index)
        return batch.replace(data=SpikeTrain(spikes, data.encoding), labels=labels)

    def concat(self, batches: list[Batch]) -> Batch:
        if not batches:
            raise ValueError("concat needs at least one batch")
        spikes = torch.cat([b.data.spikes for b in batches])
        labels = Batch.joined_labels(batches)
        return spike_batch(spikes, labels, batches[0].data.encoding)

    def save(self, batch: Batch, directory: Path, stem: str) -> dict[str, str]:
        """Write ``<stem>.npy``: float32 (N, T, C, H, W), clipped to [0, 1]."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem}.npy"
        np.save(path, _to_numpy(batch.data.spikes))
        return {stem: str(path)}

    def save_pictures(self, truth: Batch, recon: Batch, directory: Path) -> dict[str, str]:
        """Write ``grid.png``: decoded true inputs on top, decoded reconstructions below (events: both
        polarities summed into one gray channel)."""
        from PIL import Image as PILImage

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "grid.png"
        pictures = [_picture(b.data) for b in (truth, recon)]
        PILImage.fromarray(image_grid(*pictures)).save(path)
        return {"grid": str(path)}


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return torch.nan_to_num(t.detach().cpu().float(), nan=0.0).clamp(0.0, 1.0).numpy().astype(np.float32)


def _picture(train: SpikeTrain) -> np.ndarray:
    images = train.images()
    if images.shape[1] == 2:  # ON and OFF event rates
        images = images.sum(1, keepdim=True).clamp(0.0, 1.0)
    return _to_numpy(images)
