"""The ``image`` modality: float image tensors ``(N, C, H, W)`` in ``[0, 1]`` with integer class labels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradleak import Batch, Modality, SearchSpace

if TYPE_CHECKING:
    from gradleak import AttackerView

#: A reconstruction counts as successful from this PSNR on (dB, data range 1).
SUCCESS_PSNR_DB = 20.0
#: Columns of the picture grid before it wraps onto another pair of rows.
GRID_COLUMNS = 16
#: Pixels between tiles of the picture grid.
GRID_GAP = 4


class ImageSpace(SearchSpace):
    """Candidate images optimised directly in pixel space (DLG, iDLG, Inverting Gradients).

    ``init`` draws ``z ~ N(0, 1)`` of shape ``(restarts, batch, C, H, W)`` from the attack's generator;
    ``decode`` is the identity; with ``boxed``, ``project`` clamps ``z`` to the data range ``[0, 1]`` in place
    after every optimizer step.
    """

    def __init__(self, sample_shape: tuple[int, ...], boxed: bool = True) -> None:
        self.sample_shape = tuple(sample_shape)
        self.boxed = boxed

    def init(self, restarts: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((restarts, batch_size, *self.sample_shape), generator=generator, device=generator.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def project(self, z: torch.Tensor) -> None:
        if self.boxed:
            with torch.no_grad():
                z.clamp_(0.0, 1.0)

    def to_batch(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> Batch:
        return Batch(inputs, labels, "image")


class Image(Modality):
    """Images: float tensors (N, C, H, W) in [0, 1] plus class labels; scored by PSNR, SSIM, MSE, label accuracy.

    Reconstructions are matched to the truth by minimum total per-image MSE (Hungarian), saved as
    ``truth.npy``/``recon.npy`` (N, C, H, W float32, clipped to [0, 1]) and drawn as ``grid.png`` (truth on
    top, reconstruction below). A sample is a success at PSNR >= 20 dB.
    """

    name = "image"
    primary_metric = "psnr"
    default_metrics = ("psnr", "ssim", "mse", "label_acc")
    success_criterion = f"PSNR >= {SUCCESS_PSNR_DB:g} dB"

    def is_success(self, metrics: Mapping[str, float]) -> bool:
        return float(metrics["psnr"]) >= SUCCESS_PSNR_DB

    def search_space(self, view: AttackerView, boxed: bool = True) -> ImageSpace:
        return ImageSpace(view.sample_shape, boxed=boxed)

    def pairwise_cost(self, recon: Batch, truth: Batch) -> torch.Tensor:
        """``cost[i, j]`` = MSE between reconstructed image ``i`` and true image ``j``."""
        t = truth.data.detach().flatten(1).float()
        r = recon.data.detach().to(t.device).flatten(1).float()
        if r.shape[1] != t.shape[1]:
            raise ValueError(f"reconstructed images {tuple(recon.data.shape[1:])} do not have the shape of the "
                             f"true images {tuple(truth.data.shape[1:])}")
        return torch.stack([(t - row).pow(2).mean(1) for row in r]) if len(r) else t.new_zeros((0, len(t)))

    def select(self, batch: Batch, index: torch.Tensor) -> Batch:
        data = batch.data[index.to(batch.data.device)]
        labels = batch.labels_at(index)
        return batch.replace(data=data, labels=labels)

    def concat(self, batches: list[Batch]) -> Batch:
        if not batches:
            raise ValueError("concat needs at least one batch")
        data = torch.cat([b.data for b in batches])
        labels = Batch.joined_labels(batches)
        return Batch(data, labels, self.name)

    def save(self, batch: Batch, directory: Path, stem: str) -> dict[str, str]:
        """Write ``<stem>.npy``: float32 (N, C, H, W), clipped to [0, 1] (what the metrics score)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem}.npy"
        np.save(path, _to_numpy(batch.data))
        return {stem: str(path)}

    def save_pictures(self, truth: Batch, recon: Batch, directory: Path) -> dict[str, str]:
        """Write ``grid.png``: true images on top, their reconstructions below (see :func:`image_grid`)."""
        from PIL import Image as PILImage

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "grid.png"
        PILImage.fromarray(image_grid(_to_numpy(truth.data), _to_numpy(recon.data))).save(path)
        return {"grid": str(path)}


def _to_numpy(images: torch.Tensor) -> np.ndarray:
    arr = images.detach().cpu().float()
    arr = torch.nan_to_num(arr, nan=0.0).clamp(0.0, 1.0)
    return arr.numpy().astype(np.float32)


def grid_scale(height: int, width: int) -> int:
    """Nearest-neighbour upscaling factor of the grid: 4 for 32x32 images (tiles of about 128 px), at least 1."""
    return max(1, 128 // max(height, width))


def image_grid(truth: np.ndarray, recon: np.ndarray, columns: int = GRID_COLUMNS, gap: int = GRID_GAP) -> np.ndarray:
    """An RGB uint8 picture of ``truth`` and ``recon`` (``(N, C, H, W)`` in [0, 1]) on a white background.

    Up to ``columns`` images a row: a row of true images, the row of their reconstructions under it, and
    further pairs of rows below when there are more images. Tiles are upscaled by :func:`grid_scale` with
    nearest neighbours and separated by ``gap`` pixels (twice that between pairs of rows). For ``N <= columns``
    the picture is ``2 * T + 3 * gap`` high and ``N * T + (N + 1) * gap`` wide, with tile size ``T``.
    """
    n, _, h, w = truth.shape
    s = grid_scale(h, w)
    th, tw = h * s, w * s
    cols = max(1, min(n, columns))
    blocks = max(1, math.ceil(n / cols))
    height = gap + blocks * 2 * (th + gap) + (blocks - 1) * gap
    width = gap + cols * (tw + gap)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for row_in_pair, images in enumerate((truth, recon)):
        for i in range(min(n, len(images))):
            block, col = divmod(i, cols)
            y = gap + (2 * block + row_in_pair) * (th + gap) + block * gap
            x = gap + col * (tw + gap)
            canvas[y:y + th, x:x + tw] = _tile(images[i], s)
    return canvas


def _tile(image: np.ndarray, scale: int) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] -> ``(H * scale, W * scale, 3)`` uint8, grayscale replicated to RGB."""
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    pixels = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)
