"""Medical cases: a hospital's classifier of image patches, trained federatedly, attacked by the server.

Every case holds ``image`` data, so every image attack (``dlg``, ``idlg``, ``inverting-gradients`` and the
vision plugin's) and image metric applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gradleak import Batch, Case, CaseConfig, DataError, param
from gradleak_vision.cases import cross_entropy

from .loaders import load_dicom_folder, load_medmnist
from .models import patch_cnn, patch_resnet
from .patches import class_names, medical_patches, public_medical_patches


@dataclass(frozen=True)
class PatchCaseConfig(CaseConfig):
    latent: int = param(64, "size of the encoder's code (where latent-perturbation adds its noise)")


class _PatchCase(Case):
    modality = "image"
    default_batch_size = 1
    Config = PatchCaseConfig
    sample_shape = (3, 32, 32)
    num_classes = len(class_names())

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return cross_entropy(outputs, labels, self.name)

    def load_data(self, path: Path | None) -> Batch:
        """Built-in: the offline patches; ``--data``: a folder of DICOM files, a MedMNIST ``.npz``, or images."""
        if path is None:
            return medical_patches()
        if path.is_dir() and any(p.suffix.lower() in (".dcm", ".dicom") for p in path.rglob("*")):
            return load_dicom_folder(path, self.sample_shape, class_names())
        if path.suffix == ".npz":
            return load_medmnist(path, self.sample_shape)
        from gradleak_vision.data import load_image_data

        return load_image_data(path, self.sample_shape, num_classes=self.num_classes)

    def public_data(self) -> Batch | None:
        return public_medical_patches()


class _BuiltinClasses(_PatchCase):
    extra_metrics = ("attacker_acc",)


class CNNPatches(_BuiltinClasses):
    """A small sigmoid CNN (DLG-style, with a linear code) classifying real CT/MR/ultrasound/microscopy patches.

    Data: 32x32 tiles of real DICOM slices from pydicom's test files and microscopy images from scikit-image,
    labelled by source class (``gradleak_medical.patches``). ``--data`` takes a DICOM folder, a MedMNIST
    ``.npz`` or an image folder.
    """

    name = "cnn-patches"
    paper = "Jiang, Firouzi, Chakrabarty: Defending Against Gradient Inversion Attacks for Biomedical Images"

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        return patch_cnn(self.num_classes, self.config.latent, generator, self.device)


class ResNetPatches(_BuiltinClasses):
    """A small ResNet (two basic blocks, BatchNorm, ReLU) on the same biomedical patches."""

    name = "resnet-patches"

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        return patch_resnet(self.num_classes, latent=self.config.latent, generator=generator, device=self.device)


@dataclass(frozen=True)
class BloodMNISTConfig(PatchCaseConfig):
    split: str = param("test", "which MedMNIST split is the private data (train, val or test)")


class BloodMNIST(_PatchCase):
    """The small CNN on BloodMNIST (8 blood-cell classes, 28x28 RGB resized to 32x32): online data.

    MedMNIST's data comes from Zenodo, which is not reachable offline: pass the official ``bloodmnist.npz``
    with ``--data``, or place it at ``~/.medmnist/bloodmnist.npz`` (where the ``medmnist`` package puts it).
    """

    name = "bloodmnist"
    num_classes = 8
    online_data = True
    Config = BloodMNISTConfig

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        return patch_cnn(self.num_classes, self.config.latent, generator, self.device)

    def load_data(self, path: Path | None) -> Batch:
        path = path or Path.home() / ".medmnist" / "bloodmnist.npz"
        if not path.is_file():
            raise DataError(f"medical/bloodmnist needs MedMNIST's bloodmnist.npz (online data, not here: {path}); "
                            "download it with the medmnist package when online and pass --data bloodmnist.npz")
        if self.config.split not in ("train", "val", "test"):
            raise DataError(f"split={self.config.split!r}: choose train, val or test")
        return load_medmnist(path, self.sample_shape, self.config.split)

    def public_data(self) -> Batch | None:
        path = Path.home() / ".medmnist" / "bloodmnist.npz"
        return load_medmnist(path, self.sample_shape, "train") if path.is_file() else None


CASES = [CNNPatches, ResNetPatches, BloodMNIST]
