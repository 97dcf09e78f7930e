"""Hook implementations of gradleak-vision: the ``image`` modality, the ``lenet`` case, image metrics."""

from __future__ import annotations

from gradleak import hookimpl

from .cases import LeNetCase
from .metrics import MSE, PSNR, SSIM
from .modality import Image


@hookimpl
def register_modalities(register):
    register(Image)


@hookimpl
def register_cases(register):
    register(LeNetCase)


@hookimpl
def register_metrics(register):
    register(MSE)
    register(PSNR)
    register(SSIM)
