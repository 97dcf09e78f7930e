"""The engine's speed options change the layout or the arithmetic, never the update it computes; the attack
loop leaves the device alone between its every-10-iteration checks."""

from __future__ import annotations

import collections
import traceback
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gradleak
from gradleak import ThreatModel
from gradleak.engine import CandidateUpdate, functional
from gradleak.fl.client import client_update
from gradleak_vision.cases import ConvNetCase, ConvNetConfig
from gradleak_vision.data import NUM_CLASSES, photo_crops
from gradleak_vision.modality import Image

IMAGE = Image()


@pytest.fixture
def options():
    """Restores the engine's speed options after a test changes them."""
    previous = functional.accelerate()
    yield functional
    functional.accelerate(compile=previous.compile, precision=previous.precision,
                          channels_last=previous.channels_last)


def convnet_round(mode: str = "eval", batch_size: int = 2):
    """(view, update) of one client round of a width-4 ConvNet (BatchNorm, max-pools) on real photo crops."""
    c = ConvNetCase(ConvNetConfig(width=4, mode=mode), "cpu")
    batch = IMAGE.select(photo_crops(), torch.arange(batch_size))
    model = c.build_model(torch.Generator().manual_seed(0))
    update = client_update(model, c, IMAGE, batch, [], torch.Generator().manual_seed(1))[2]
    model.train(mode == "train")
    view = gradleak.AttackerView(model=model, loss=c.loss, forward=c.forward, modality=IMAGE, threat=ThreatModel(),
                                 sample_shape=(3, 32, 32), num_classes=NUM_CLASSES, batch_size=batch_size,
                                 generator=torch.Generator().manual_seed(2), labels=batch.labels)
    return view, update, batch


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("restarts", [1, 3])
def test_channels_last_computes_the_same_update(options, mode, restarts):
    view, update, batch = convnet_round(mode)
    x = torch.rand((restarts, 2, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    default = CandidateUpdate(view, update)(x, batch.labels, per_restart_labels=False)
    options.accelerate(channels_last=True)
    fn = CandidateUpdate(view, update)
    weights = [p for p in fn.params.values() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    nhwc = fn(x, batch.labels, per_restart_labels=False)
    # Other kernels sum in another order: float32 rounding, against the update's scale (in train mode the
    # biases before BatchNorm have a zero gradient, which both layouts give as rounding noise).
    scale = max(float(a.abs().max()) for a in default)
    for a, b in zip(default, nhwc):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * scale)


def test_tf32_off_cuda_warns_and_computes_fp32(options):
    view, update, batch = convnet_round()
    x = batch.data[None]
    default = CandidateUpdate(view, update)(x, batch.labels, per_restart_labels=False)
    options.accelerate(precision="tf32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn = CandidateUpdate(view, update)
    assert any("CUDA matrix products and convolutions only" in str(w.message) for w in caught)
    with fn.numerics():
        got = fn(x, batch.labels, per_restart_labels=False)
    for a, b in zip(default, got):
        assert torch.equal(a, b)


@pytest.mark.parametrize("precision, inside", [("fp32", "ieee"), ("tf32", "tf32"), ("bf16", "ieee")])
def test_numerics_holds_cuda_fp32_precision_during_the_loop_and_restores_it(options, precision, inside):
    """torch lets cuDNN convolutions round to TF32 by default: "fp32" must mean IEEE fp32 there."""
    options.accelerate(precision=precision)
    view, update, _ = convnet_round()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf32 / bf16 warn off CUDA; the flags are what this test reads
        fn = CandidateUpdate(view, update)
    fn.device = torch.device("cuda")  # the flags exist on CPU builds too; nothing runs on a GPU here
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (matmul.fp32_precision, conv.fp32_precision)
    with fn.numerics():
        assert (matmul.fp32_precision, conv.fp32_precision) == (inside, inside)
    assert (matmul.fp32_precision, conv.fp32_precision) == before


@pytest.mark.parametrize("precision, inside", [("fp32", False), ("tf32", True)])
def test_numerics_uses_the_allow_tf32_flags_before_torch_2_9(options, monkeypatch, precision, inside):
    """torch < 2.9 has no ``fp32_precision``: the same hold and restore goes through ``allow_tf32``."""
    from types import SimpleNamespace

    options.accelerate(precision=precision)
    view, update, _ = convnet_round()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = CandidateUpdate(view, update)
    fn.device = torch.device("cuda")
    old_matmul = SimpleNamespace(allow_tf32=not inside)
    monkeypatch.setattr(torch.backends.cuda, "matmul", old_matmul)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", not inside)
    with fn.numerics():
        assert (old_matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (inside, inside)
    assert (old_matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (not inside, not inside)


def test_unknown_precision_is_refused_naming_the_choices(options, monkeypatch):
    with pytest.raises(gradleak.ConfigError, match="fp32, tf32, bf16"):
        options.accelerate(precision="fp16")
    monkeypatch.setenv("GRADLEAK_PRECISION", "fp16")
    with pytest.raises(gradleak.ConfigError, match="GRADLEAK_PRECISION='fp16'.*fp32, tf32, bf16"):
        functional._from_environment()
    monkeypatch.setenv("GRADLEAK_PRECISION", "fp32")
    monkeypatch.setenv("GRADLEAK_CHANNELS_LAST", "maybe")
    with pytest.raises(gradleak.ConfigError, match="GRADLEAK_CHANNELS_LAST='maybe' is not a switch; use 1 or 0"):
        functional._from_environment()


class DeviceReads(TorchDispatchMode):
    """Counts the operations that make the host wait for the device (a scalar read, a data-dependent shape),
    made from the engine's own code (``torch.optim``'s step counter lives on the host and is not one)."""

    READS = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.masked_select")

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(self.READS):
            files = [f.filename for f in traceback.extract_stack()]
            if any(f.endswith("engine/inversion.py") for f in files) and not any("torch/optim" in f for f in files):
                self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def device_reads(iterations: int) -> int:
    with DeviceReads() as mode:
        gradleak.run("vision/lenet", "inverting-gradients", device="cpu", seed=0, budget=iterations,
                     sets={"labels": "known", "restarts": 2})
    return sum(mode.calls.values())


def test_the_adam_loop_reads_the_device_only_every_10_iterations():
    # 20 more iterations add two checks (is any restart alive?); progress is read only when someone listens.
    assert device_reads(45) - device_reads(25) <= 2
