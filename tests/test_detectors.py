"""Client-side detectors separate models prepared by active attacks from honest ones."""

from __future__ import annotations

import copy

import pytest
import torch

import gradleak
from gradleak import AttackerView, ClientContext
from gradleak.builtin.detectors import DETECTORS, Suspicion
from gradleak.device import generator

pytest.importorskip("gradleak_vision")
from gradleak_vision.data import photo_crops  # noqa: E402

SEEDS = range(3)


def rounds(case: str, attack: str):
    """``(honest, attacked, reference, context)`` for a few seeds: the attacked model is ``prepare``'s output."""
    p = gradleak.plan(case, attack, sets={"malicious": "true"}, device="cpu")
    data = photo_crops()
    for seed in SEEDS:
        gen = generator(torch.device("cpu"), seed)
        model = p.case.build_model(gen)
        reference = p.case.build_model(generator(torch.device("cpu"), 1000 + seed))
        batch = p.modality.select(data, torch.arange(8 * seed, 8 * seed + 8))
        view = AttackerView(model=model, loss=p.case.loss, forward=p.case.forward, modality=p.modality,
                            threat=p.case.threat_model, sample_shape=(3, 32, 32), num_classes=p.case.num_classes,
                            batch_size=8, generator=gen)
        attacked = p.attack.prepare(copy.deepcopy(model), view)
        yield model, attacked, reference, batch, p


@pytest.mark.parametrize("case,attack,detector", [
    ("vision/mlp", "robbing-the-fed", "duplicate-rows"),
    ("vision/lenet", "robbing-the-fed", "duplicate-rows"),
    ("vision/mlp", "trap-weights", "trap-asymmetry"),
    ("vision/lenet", "trap-weights", "trap-asymmetry"),
    ("vision/mlp", "fishing", "weight-outliers"),
    ("vision/lenet", "fishing", "weight-outliers"),
])
def test_structure_detector_flags_the_attack_and_passes_honest_models(case, attack, detector):
    cls = next(c for c in DETECTORS if c.name == detector)
    for honest, attacked, reference, batch, p in rounds(case, attack):
        assert cls().score(honest, reference) < cls.threshold
        assert cls().score(attacked, reference) >= cls.threshold


def test_dynamics_detectors_see_fishing_and_trap_weights():
    """Fishing's logits of 1000 make the loss jump when the batch holds the target class (class 0 here);
    trap weights concentrate the first layer's gradient in fewer units."""
    from gradleak.builtin.detector_dynamics import GradientConcentration, LossJump

    for honest, attacked, reference, batch, p in rounds("vision/mlp", "fishing"):
        ctx = ClientContext(honest, p.case, p.modality, batch)
        assert LossJump().score(honest, reference, context=ctx) < LossJump.threshold
        has_target = bool((batch.labels == 0).any())
        jumped = LossJump().score(attacked, reference, context=ClientContext(attacked, p.case, p.modality, batch))
        assert (jumped >= LossJump.threshold) == has_target
    for honest, attacked, reference, batch, p in rounds("vision/mlp", "trap-weights"):
        ctx = ClientContext(honest, p.case, p.modality, batch)
        bad = ClientContext(attacked, p.case, p.modality, batch)
        # Trap units fire for few samples: the first layer's gradient sits in fewer units than an honest one's.
        assert (GradientConcentration()._top_share(attacked, bad) > GradientConcentration()._top_share(honest, ctx))


def test_suspicion_combines_all_tests():
    for attack in ("robbing-the-fed", "trap-weights", "fishing"):
        for honest, attacked, reference, batch, p in rounds("vision/mlp", attack):
            ctx = ClientContext(honest, p.case, p.modality, batch)
            assert Suspicion().score(honest, reference, context=ctx) < 1.0
            assert Suspicion().score(attacked, reference) >= 1.0


def test_dynamics_detectors_need_the_batch():
    from gradleak.builtin.detector_dynamics import LossJump

    model = torch.nn.Linear(4, 2)
    with pytest.raises(gradleak.UsageError, match="client's batch"):
        LossJump().score(model)


def test_detectors_are_registered():
    names = {c.name for c in gradleak.registry().components("detector")}
    assert {"duplicate-rows", "trap-asymmetry", "weight-outliers", "loss-jump", "activation-sparsity",
            "gradient-concentration", "suspicion"} <= names
