"""Active (malicious-server) attacks: their prepared models leak what their papers say."""

from __future__ import annotations

import numpy as np
import pytest

import gradleak
from gradleak_vision.data import held_out_photos, photo_crops

EXACT_DB = 60.0
MALICIOUS = {"malicious": "true"}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("held-out") / "photos.npy"
    np.save(path, held_out_photos().data.numpy())
    return str(path)


def exact(result) -> int:
    return sum(1 for row in result.per_sample if row["status"] == "ok" and row["psnr"] >= EXACT_DB)


@pytest.mark.parametrize("case", ["vision/mlp", pytest.param("vision/lenet", marks=pytest.mark.slow)])
def test_robbing_the_fed_recovers_most_of_a_batch_of_16(tmp_path, case):
    """Fowl et al.: with 2x as many bins as images, (1 - 1/32)^15 = 62% of the images sit alone in a bin and
    come back exactly. The bins are quantiles of the brightness distribution the server assumes (fitted on
    the public crops), so we feed crops from that distribution: 4 batches of 16 (64 images), >= 50% exact."""
    crops = photo_crops(per_photo=8, seed=7).data.numpy()[:64]
    np.save(tmp_path / "crops.npy", crops)
    result = gradleak.run(case, "robbing-the-fed", data=str(tmp_path / "crops.npy"), batch_size=16, device="cpu",
                          sets=MALICIOUS)
    assert len(result.per_sample) == 64
    assert exact(result) >= 32, exact(result)


def test_active_attacks_need_a_malicious_server():
    with pytest.raises(gradleak.CapabilityError, match="modify_model.*--set malicious=true"):
        gradleak.run("vision/mlp", "robbing-the-fed", batch_size=4, device="cpu")


def test_active_attack_without_malicious_exits_2():
    from click.testing import CliRunner

    from gradleak.cli import cli

    out = CliRunner().invoke(cli, ["run", "--case", "vision/mlp", "--attack", "trap-weights", "--device", "cpu"])
    assert out.exit_code == 2 and "malicious=true" in out.output


def test_trap_weights_recover_exact_images_and_flag_the_rest(held_out):
    """Boenisch et al.: units firing for one sample give it exactly; what is returned as ok is exact."""
    result = gradleak.run("vision/mlp", "trap-weights", data=held_out, batch_size=8, batches=2, device="cpu",
                          sets=MALICIOUS)
    ok = [row for row in result.per_sample if row["status"] == "ok"]
    assert exact(result) >= 6, result.per_sample
    assert all(row["psnr"] >= EXACT_DB for row in ok), ok


def test_trap_weights_insert_a_layer_in_front_of_lenet(held_out):
    result = gradleak.run("vision/lenet", "trap-weights", data=held_out, batch_size=8, batches=1, device="cpu",
                          sets=MALICIOUS)
    assert exact(result) >= 3, result.per_sample


def test_class_fishing_isolates_the_target_class():
    """Wen et al.: the default crops of a batch of 8 hold classes 0..7; fishing class 3 returns that image exactly."""
    result = gradleak.run("vision/mlp", "fishing", batch_size=8, device="cpu", sets={**MALICIOUS, "target_class": "3"})
    ok = [row for row in result.per_sample if row["status"] == "ok"]
    assert len(ok) == 1 and ok[0]["index"] == 3 and ok[0]["psnr"] >= EXACT_DB, result.per_sample
    assert ok[0]["label_acc"] == 1.0


def test_fishing_for_an_absent_class_fails_honestly():
    result = gradleak.run("vision/mlp", "fishing", batch_size=4, device="cpu", sets={**MALICIOUS, "target_class": "9"})
    assert result.failed == 4 and {row["status"] for row in result.per_sample} == {"failed: absent"}
