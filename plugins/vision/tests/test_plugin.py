"""Registration through the entry point, and end-to-end runs through the core."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradleak
from gradleak_vision.cases import LeNetCase


def test_the_plugin_registers_its_components():
    reg = gradleak.Registry()
    assert reg.infos["vision"].status == "ok", reg.infos["vision"].error
    assert reg.modality("image").plugin == "vision"
    assert reg.get("case", "vision/lenet").modality == "image"
    assert reg.get("case", "lenet").plugin == "vision"
    for name in ("psnr", "ssim", "mse"):
        assert reg.get("metric", name, modality="image").plugin == "vision"


@pytest.mark.usefixtures("single_thread")
def test_dlg_runs_end_to_end(tmp_path):
    r = gradleak.run("vision/lenet", "dlg", device="cpu", seed=0, sets={"restarts": 1}, budget=5, out=tmp_path)
    assert set(r.metrics) == {"psnr", "ssim", "mse", "label_acc"}
    assert all(math.isfinite(v) for v in r.metrics.values())
    assert r.case == "vision/lenet" and len(r.per_sample) == 1
    assert set(r.artifacts) == {"truth", "recon", "grid"}
    truth = np.load(r.artifacts["truth"])
    assert truth.shape == (1, 3, 32, 32)
    assert np.array_equal(truth, LeNetCase().load_data(None).data[:1].numpy())


@pytest.mark.usefixtures("single_thread")
def test_idlg_on_user_data(tmp_path, rng, write_image):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "data" / name, rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    r = gradleak.run("vision/lenet", "idlg", data=tmp_path / "data", device="cpu", sets={"restarts": 1}, budget=2)
    assert len(r.per_sample) == 2 and {row["batch"] for row in r.per_sample} == {0, 1}
    assert r.metrics["label_acc"] == 1.0  # iDLG reads a single label exactly


def test_bad_data_is_a_usage_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(gradleak.DataError, match="x.png"):
        gradleak.run("vision/lenet", "idlg", data=tmp_path, device="cpu", budget=1)


def test_conformance_kit():
    from gradleak.testing import check_plugin

    check_plugin("vision")
