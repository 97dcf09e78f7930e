"""Metrics in the feature space of a network: LPIPS (pretrained AlexNet/VGG, local weights only) and
``feature_mse`` (a fixed, seeded ConvNet).

Neither ever downloads anything: LPIPS reads torchvision's backbone checkpoint from the torch hub cache and
refuses with the file to place there when it is absent.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import torch

from gradleak import Batch, DependencyMissing, Metric

IMAGE = frozenset({"image"})


def _pair(recon: Batch, truth: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    from .metrics import _pair as pair  # metrics imports this module to register its classes

    return pair(recon, truth)

#: torchvision's checkpoint file of each LPIPS backbone (looked up in ``torch.hub.get_dir()/checkpoints``).
BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def backbone_path(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[net]


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]


class LPIPS(Metric):
    """Learned Perceptual Image Patch Similarity per image (lower is better), AlexNet backbone.

    Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a Perceptual
    Metric", CVPR 2018; the ``lpips`` package's calibrated linear heads on torchvision's ImageNet AlexNet.
    Needs ``pip install "gradleak-vision[lpips]"`` (lpips + torchvision) and the AlexNet checkpoint already in
    the torch hub cache: it is never downloaded, the error names the file instead. Grayscale is replicated to RGB.
    """

    name = "lpips"
    modalities = IMAGE
    higher_is_better = False
    paper = "Zhang et al., The Unreasonable Effectiveness of Deep Features as a Perceptual Metric, CVPR 2018"
    net: ClassVar[str] = "alex"

    def __init__(self, config=None, device: torch.device | str = "cpu") -> None:
        super().__init__(config, device)
        self._model = _lpips_model(self.net, str(self.device))

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        model = self._model
        with torch.no_grad():
            out = model(_rgb(r).float().to(self.device), _rgb(t).float().to(self.device), normalize=True)
        return out.flatten().float().cpu()


@functools.lru_cache(maxsize=4)
def _lpips_model(net: str, device: str) -> torch.nn.Module:
    extra = 'pip install "gradleak-vision[lpips]"'
    for module in ("lpips", "torchvision"):
        try:
            __import__(module)
        except ImportError as exc:
            raise DependencyMissing(f"the lpips metric needs the '{module}' package ({exc}); "
                                    f"install it with: {extra}") from None
    path = backbone_path(net)
    if not path.is_file():
        raise DependencyMissing(f"the lpips metric needs the {net} ImageNet weights at {path}, which are absent; "
                                f"gradleak never downloads them: copy {path.name} there (or set TORCH_HOME)")
    import lpips

    model = lpips.LPIPS(net=net, pretrained=True, verbose=False).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


#: Width and seed of the fixed reference network of ``feature_mse``.
FEATURE_WIDTH, FEATURE_SEED = 16, 0


@functools.lru_cache(maxsize=8)
def _feature_net(channels: int, device: str) -> torch.nn.Module:
    from .convnet import ConvNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FEATURE_SEED)
        net = ConvNet(FEATURE_WIDTH, num_classes=1, channels=channels).features
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                # He initialisation keeps the feature scale through the 8 ReLU layers (torch's default shrinks it).
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
    return net.to(device=device, dtype=torch.float64).eval()


class FeatureMSE(Metric):
    """MSE between the features of reconstruction and truth under a fixed reference ConvNet (lower is better).

    inversefed's ``feat_mse`` (Geiping et al., NeurIPS 2020) is ``mean (F(x') - F(x))^2`` with ``F`` the attacked
    model. A metric sees only the two image batches, so ``F`` here is one fixed network for every run: the
    convolutional part of Geiping et al.'s ConvNet (width 16, He-normal weights drawn under seed 0, zero biases,
    eval mode), whose 576 output features are compared. Random conv features are a perceptual distance of
    their own (they weigh structure over per-pixel noise), and being fixed they compare across runs.
    """

    name = "feature_mse"
    modalities = IMAGE
    higher_is_better = False
    paper = "Geiping et al., Inverting Gradients, NeurIPS 2020 (feat_mse)"

    def __call__(self, recon: Batch, truth: Batch) -> torch.Tensor:
        r, t = _pair(recon, truth)
        if min(t.shape[-2:]) < 9:
            raise ValueError(f"feature_mse needs images of at least 9x9 pixels, got {tuple(t.shape[-2:])}")
        net = _feature_net(t.shape[1], str(t.device))
        with torch.no_grad():
            return (net(r) - net(t)).pow(2).flatten(1).mean(1).float()
