"""The configurable vision cases: their models, data sets, --set knobs and bad input."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

import gradleak
from gradleak import ConfigError, DataError
from gradleak.config import make_config
from gradleak_vision.cases import ConvNetCase, PreActResNetCase, ResNet18Case, ViTTinyCase
from gradleak_vision.convnet import ConvNet
from gradleak_vision.resnet import ResNet

pytestmark = pytest.mark.usefixtures("single_thread")


def make(cls, **sets):
    return cls(make_config(cls.Config, {k: str(v) for k, v in sets.items()}, cls.name), "cpu")


def test_cases_are_registered():
    for name in ("vision/lenet", "vision/convnet", "vision/resnet18", "vision/preact-resnet", "vision/vit-tiny"):
        assert gradleak.registry().get("case", name).qualified_name() == name


def test_width_depth_and_norm_reach_the_model():
    gen = torch.Generator().manual_seed(0)
    conv = make(ConvNetCase, width=4).build_model(gen)
    assert isinstance(conv, ConvNet) and conv.fc.in_features == 36 * 4
    pre = make(PreActResNetCase, width=8, depth=3, stages=2, norm="post", skips="false").build_model(gen)
    assert isinstance(pre, ResNet) and not pre.preact and len(pre.layers) == 6 and not pre.layers[0].skips
    assert make(ResNet18Case, width=4).build_model(gen).fc.in_features == 32
    vit = make(ViTTinyCase, dim=12, depth=1, heads=2).build_model(gen)
    assert vit(torch.rand(1, 3, 32, 32)).shape == (1, 20)
    with pytest.raises(ConfigError, match="width"):
        make(ConvNetCase, width=0)
    with pytest.raises(ConfigError, match="multiple of heads"):
        make(ViTTinyCase, dim=10, heads=3)


def test_mnist_digits_are_the_default_mnist_data():
    case = make(ConvNetCase, width=4, dataset="mnist")
    private, public = case.load_data(None), case.public_data()
    assert private.data.shape == (4000, 1, 28, 28) and public.data.shape == (1000, 1, 28, 28)
    assert case.num_classes == 10 and torch.equal(private.labels[:10], torch.arange(10))
    assert case.build_model(torch.Generator().manual_seed(0))(private.data[:2]).shape == (2, 10)


def write_cifar(path, n=6, classes=10):
    rng = np.random.default_rng(0)
    key = b"fine_labels" if classes == 100 else b"labels"
    d = {b"batch_label": b"testing batch 1 of 1", key: [int(v) for v in rng.integers(0, classes, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def test_cifar_batches_through_data(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    d = write_cifar(folder / "train", classes=100)
    case = make(ConvNetCase, width=4, dataset="cifar100")
    batch = case.load_data(folder)
    assert batch.labels.tolist() == d[b"fine_labels"] and case.num_classes == 100
    with pytest.raises(DataError, match="dataset=cifar100"):
        make(ConvNetCase, width=4).load_data(folder)  # 20 photo classes cannot hold CIFAR-100's labels
    with pytest.raises(DataError, match="--data"):
        case.load_data(None)


def test_wrong_channels_are_converted_with_a_notice(tmp_path, caplog):
    np.save(tmp_path / "rgb.npy", np.random.default_rng(0).random((3, 3, 40, 40)).astype(np.float32))
    case = make(ConvNetCase, width=4, dataset="mnist")
    with caplog.at_level(logging.WARNING):
        batch = case.load_data(tmp_path / "rgb.npy")
    assert batch.data.shape == (3, 1, 28, 28)
    text = caplog.text
    assert "28x28" in text and "grayscale" in text


def test_a_run_on_a_new_case(single_thread):
    r = gradleak.run("vision/preact-resnet", "idlg", device="cpu", budget=2,
                     sets={"width": 4, "depth": 1, "stages": 2, "restarts": 1})
    assert r.metrics["label_acc"] == 1.0 and r.case == "vision/preact-resnet"
