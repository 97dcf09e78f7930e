"""An attack that knows it failed says so: failed samples are recorded as such and never scored."""

from __future__ import annotations

import types

import pytest
import torch

import gradleak
from gradleak import Attack, hookimpl


class FailsWholeBatch(Attack):
    """Refuses batches larger than one sample, as a rank-limited exact attack would."""

    name = "fails-big"
    modalities = frozenset({"image"})

    def reconstruct(self, update, view, budget=None):
        if view.batch_size > 1:
            raise gradleak.AttackFailed("rank", f"{view.batch_size} samples exceed the rank limit of 1")
        x = torch.full((1, *view.sample_shape), 0.5, device=view.device)
        return gradleak.Reconstruction(view.modality.search_space(view).to_batch(x, view.labels))


class FailsOneSample(Attack):
    """Returns a batch whose second sample it flags as unrecoverable."""

    name = "fails-one"
    modalities = frozenset({"image"})

    def reconstruct(self, update, view, budget=None):
        x = torch.full((view.batch_size, *view.sample_shape), 0.5, device=view.device)
        batch = view.modality.search_space(view).to_batch(x, view.labels)
        return gradleak.Reconstruction(batch, failed={1: "rank"})


def _registry() -> gradleak.Registry:
    module = types.ModuleType("failing_attacks")

    @hookimpl
    def register_attacks(register):
        register(FailsWholeBatch)
        register(FailsOneSample)

    module.register_attacks = register_attacks
    return gradleak.Registry(extra=[("failing", module)])


def test_a_batch_the_attack_cannot_handle_is_recorded_as_failed_and_the_run_goes_on(tmp_path):
    reg = _registry()
    result = gradleak.run("vision/lenet", "fails-big", batch_size=2, seed=0, device="cpu", reg=reg,
                          out=tmp_path, sets={"labels": "known"})
    assert [r["status"] for r in result.per_sample] == ["failed: rank", "failed: rank"]
    assert result.failed == 2 and result.success_rate == 0.0
    assert result.metrics == {} and "psnr" not in result.per_sample[0]
    assert result.artifacts == {}  # no reconstruction exists to save
    assert result.as_json()["failed"] == 2


def test_flagged_samples_are_failed_and_left_out_of_the_mean():
    reg = _registry()
    result = gradleak.run("vision/lenet", "fails-one", batch_size=2, seed=0, device="cpu", reg=reg,
                          sets={"labels": "known"})
    statuses = sorted(r["status"] for r in result.per_sample)
    assert statuses == ["failed: rank", "ok"]
    [ok] = [r for r in result.per_sample if r["status"] == "ok"]
    assert result.metrics["psnr"] == pytest.approx(ok["psnr"])
    assert result.failed == 1
