"""The optimization-attack engine: objectives, the differentiable candidate update, batched L-BFGS, restarts,
label recovery, and what the attack settings (signed steps, box, schedule) do."""

from __future__ import annotations

import collections
import math
import warnings

import pytest
import torch
from torch import nn

import gradleak
from gradleak import Batch, ThreatModel
from gradleak.engine import (BatchedLBFGS, CandidateUpdate, InversionSettings, count_labels, cosine, idlg_label,
                             invert, l2, objective, tag)
from gradleak.engine.optim import cosine_schedule, step_schedule
from gradleak.fl.client import client_update
from gradleak_vision.cases import LeNetCase, LeNetConfig
from gradleak_vision.data import NUM_CLASSES, photo_crops
from gradleak_vision.modality import Image

IMAGE = Image()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def photos(index) -> Batch:
    return IMAGE.select(photo_crops(), torch.as_tensor(index))


def case(**config) -> LeNetCase:
    return LeNetCase(LeNetConfig(**config), "cpu")


def view_of(c: LeNetCase, model: nn.Module, batch_size: int, labels=None, seed: int = 0) -> gradleak.AttackerView:
    model.train(c.protocol.mode == "train")
    return gradleak.AttackerView(model=model, loss=c.loss, forward=c.forward, modality=IMAGE, threat=ThreatModel(),
                                 sample_shape=(3, 32, 32), num_classes=NUM_CLASSES, batch_size=batch_size,
                                 generator=gen(seed), labels=labels)


def observe(c: LeNetCase, batch: Batch, model_seed: int = 0):
    """(model, update) of one client round of case ``c`` on ``batch``."""
    model = c.build_model(gen(model_seed))
    return model, client_update(model, c, IMAGE, batch, [], gen())[2]


# ------------------------------------------------------------------------------------------------ (a) objectives

T = (torch.tensor([1.0, 2.0]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # |T|^2 = 7


def candidates():
    """Four restarts: T itself, a perturbed T (diffs [1,-2], [[0,-1],[0,3]]), -T and 2T."""
    other = (torch.tensor([2.0, 0.0]), torch.tensor([[0.0, 0.0], [1.0, 3.0]]))
    return tuple(torch.stack([t, o, -t, 2 * t]) for t, o in zip(T, other))


def test_l2_by_hand():
    torch.testing.assert_close(l2(candidates(), T), torch.tensor([0.0, 15.0, 28.0, 7.0]))


def test_cosine_by_hand():
    # restart 1: <G, T> = 2 + 1 = 3, |G|^2 = 14, |T|^2 = 7; -T is opposite; 2T is parallel.
    expected = torch.tensor([0.0, 1 - 3 / math.sqrt(98), 2.0, 0.0])
    torch.testing.assert_close(cosine(candidates(), T), expected)


def test_tag_by_hand():
    # L2 plus alpha times L1: L1 of the diffs is 0, 7, 2 |T|_1 = 10 and |T|_1 = 5.
    torch.testing.assert_close(tag(0.5)(candidates(), T), torch.tensor([0.0, 15 + 3.5, 28 + 5.0, 7 + 2.5]))
    assert objective("l2") is l2 and objective("cosine") is cosine
    torch.testing.assert_close(objective("tag", 0.5)(candidates(), T), tag(0.5)(candidates(), T))
    with pytest.raises(ValueError, match="l2, cosine or tag"):
        objective("l3")


# ------------------------------------------------------------------------------------------------ (b) candidate update


def test_candidate_gradient_is_the_true_gradient_at_the_true_inputs():
    c = case()
    batch = photos([0, 5, 9])
    model, update = observe(c, batch)
    fn = CandidateUpdate(view_of(c, model, 3), update)
    got = fn(batch.data[None], batch.labels, per_restart_labels=False)
    target = fn.target(update)
    for g, t in zip(got, target):
        torch.testing.assert_close(g[0], t, rtol=1e-5, atol=1e-7)
    assert float(l2(got, target)[0]) < 1e-10
    assert float(cosine(got, target)[0]) < 1e-6


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bfloat16_warns(monkeypatch, native):
    from gradleak.engine import functional

    c = case()
    batch = photos([0, 5])
    model, update = observe(c, batch)
    monkeypatch.setattr(functional, "native_bf16", lambda device: native)
    previous = functional.accelerate(precision="bf16")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            CandidateUpdate(view_of(c, model, 2), update)
    finally:
        functional.accelerate(compile=previous.compile, precision=previous.precision)
    slow = [w for w in caught if "no native bfloat16" in str(w.message)]
    assert bool(slow) == (not native)


def bn_model(generator: torch.Generator) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4, padding=2), nn.BatchNorm2d(4), nn.Sigmoid(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, NUM_CLASSES))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5, generator=generator)
        model[1].running_var.fill_(3.0)
    return model


class BNCase(LeNetCase):
    name = "bn"

    def build_model(self, generator):
        return bn_model(generator)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_candidate_gradient_follows_the_client_mode_with_batchnorm(mode):
    c = BNCase(LeNetConfig(mode=mode), "cpu")
    batch = photos([1, 2, 3, 4])
    model, update = observe(c, batch)
    fn = CandidateUpdate(view_of(c, model, 4), update)
    got = fn(batch.data[None], batch.labels, per_restart_labels=False)
    for g, t in zip(got, fn.target(update)):
        torch.testing.assert_close(g[0], t, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("epochs", [1, 2])
def test_candidate_delta_reproduces_the_fedavg_delta(epochs):
    c = case(protocol="fedavg", local_steps=3, local_batch_size=2, epochs=epochs, local_lr=0.1)
    batch = photos([2, 7, 11, 12, 30])  # chunks of 2, 2 and 1
    model, update = observe(c, batch, model_seed=1)
    assert update.kind == "delta"
    fn = CandidateUpdate(view_of(c, model, 5), update)
    got = fn(batch.data[None], batch.labels, per_restart_labels=False)
    target = fn.target(update)
    for g, t in zip(got, target):
        torch.testing.assert_close(g[0], t, rtol=0, atol=1e-5)
    assert float(target[-1].abs().max()) > 1e-3

    # Differentiable in the inputs: a perturbed candidate has a non-zero, finite gradient.
    x = (batch.data[None] + 0.05 * torch.randn(batch.data[None].shape, generator=gen(1))).requires_grad_(True)
    (dx,) = torch.autograd.grad(l2(fn(x, batch.labels, per_restart_labels=False), target).sum(), x)
    assert bool(torch.isfinite(dx).all()) and float(dx.abs().max()) > 0


@pytest.mark.parametrize("cls, config", [
    (BNCase, dict(mode="train")),  # per-client BatchNorm statistics
    (LeNetCase, dict(local_steps=3, local_lr=0.1)),  # per-client local trajectories, averaged
    (BNCase, dict(mode="train", local_steps=2, local_batch_size=1, local_lr=0.1)),
])
def test_candidate_update_reproduces_an_aggregate_of_clients(cls, config):
    c = cls(LeNetConfig(protocol="aggregate", clients=2, **config), "cpu")
    batch = photos([0, 1, 2, 3])
    model, update = observe(c, batch)
    assert update.num_clients == 2
    fn = CandidateUpdate(view_of(c, model, 4), update)
    got = fn(batch.data[None], batch.labels, per_restart_labels=False)
    for g, t in zip(got, fn.target(update)):
        torch.testing.assert_close(g[0], t, rtol=0, atol=1e-5)
    with pytest.raises(gradleak.DataError, match="2 clients"):
        CandidateUpdate(view_of(c, model, 3), update)


@pytest.mark.parametrize("protocol", ["fedsgd", "fedavg"])
def test_batched_restarts_equal_separate_computations(protocol):
    c = case(protocol=protocol, local_steps=2, local_batch_size=1)
    batch = photos([4, 8])
    model, update = observe(c, batch)
    fn = CandidateUpdate(view_of(c, model, 2), update)
    x = torch.rand((3, 2, 3, 32, 32), generator=gen(5))
    together = fn(x, batch.labels, per_restart_labels=False)
    for r in range(3):
        alone = fn(x[r:r + 1], batch.labels, per_restart_labels=False)
        for a, b in zip(together, alone):
            # One restart skips vmap, so its kernels sum in another order: float32 rounding, ~1e-7 here.
            torch.testing.assert_close(a[r], b[0], rtol=1e-5, atol=1e-6)
    soft = torch.softmax(torch.randn((3, 2, NUM_CLASSES), generator=gen(6)), -1)
    together = fn(x, soft, per_restart_labels=True)
    alone = fn(x[2:], soft[2:], per_restart_labels=True)
    for a, b in zip(together, alone):
        torch.testing.assert_close(a[2], b[0], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ (c) BatchedLBFGS


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """Per row of ``x`` (R, D)."""
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(1)


def start(seed: int) -> torch.Tensor:
    return -1 + 0.4 * torch.rand(10, generator=gen(seed), dtype=torch.float64)


def batched_run(starts: torch.Tensor, steps: int, line_search: bool) -> list[torch.Tensor]:
    x = starts.clone().requires_grad_(True)
    opt = BatchedLBFGS([x], len(starts), lr=1.0, max_iter=20, line_search=line_search)

    def closure():
        x.grad = None
        f = rosenbrock(x)
        f.sum().backward()
        return f

    return trajectory(opt, closure, x, steps)


def trajectory(opt, closure, x: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """The iterate after each of ``steps`` optimizer steps."""
    out = []
    for _ in range(steps):
        opt.step(closure)
        out.append(x.detach().clone())
    return out


def torch_run(x0: torch.Tensor, steps: int) -> list[torch.Tensor]:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=20)

    def closure():
        opt.zero_grad()
        f = rosenbrock(x[None]).sum()
        f.backward()
        return f

    return trajectory(opt, closure, x, steps)


def test_batched_lbfgs_without_line_search_follows_torch_lbfgs():
    ours = batched_run(start(0)[None], 3, line_search=False)
    theirs = torch_run(start(0), 3)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a[0], b, rtol=0, atol=1e-6)
    assert float(rosenbrock(theirs[-1][None])) < 2.0 < float(rosenbrock(start(0)[None]))


@pytest.mark.parametrize("line_search", [False, True])
def test_batched_lbfgs_restarts_are_independent(line_search):
    starts = torch.stack([start(s) for s in (0, 1, 2)])
    together = batched_run(starts, 4, line_search)
    for r in range(3):
        alone = batched_run(starts[r:r + 1], 4, line_search)
        for a, b in zip(together, alone):
            torch.testing.assert_close(a[r], b[0], rtol=0, atol=1e-9)
    if not line_search:
        for a, b in zip(together[:3], torch_run(starts[2], 3)):  # later, round-off differences grow chaotically
            torch.testing.assert_close(a[2], b, rtol=0, atol=1e-5)


def test_batched_lbfgs_line_search_decreases_monotonically():
    starts = torch.stack([start(s) for s in (0, 1, 2)])
    values = {ls: torch.stack([rosenbrock(starts)] + [rosenbrock(x) for x in batched_run(starts, 10, ls)])
              for ls in (True, False)}
    searched = values[True]
    assert bool((searched[1:] <= searched[:-1]).all())
    assert bool((searched[-1] < 1e-6).all())
    # The fixed step is not monotone on this problem (so the check above can fail).
    assert bool((values[False][1:] > values[False][:-1]).any())


# ------------------------------------------------------------------------------------------------ (d) restarts


class RestartPenalty(gradleak.Prior):
    """mean(x) times a weight per restart: NaN for restart 0 when ``poison`` else zero (no effect)."""

    name = "restart-penalty"

    def __init__(self, poison: bool):
        super().__init__()
        self.poison = poison

    def penalty(self, inputs, view):
        w = torch.zeros(inputs.shape[0])
        if self.poison:
            w[0] = float("nan")
        return inputs.flatten(1).mean(1) * w


@pytest.mark.parametrize("optimizer, iterations", [("adam", 20), ("lbfgs", 2)])
def test_a_nan_restart_does_not_poison_the_others(optimizer, iterations):
    c = case()
    batch = photos([3])
    model, update = observe(c, batch)
    settings = InversionSettings(objective="l2", optimizer=optimizer, lr=0.1 if optimizer == "adam" else 1.0,
                                 iterations=iterations, restarts=3, lbfgs_inner=5)
    results = {poison: invert(view_of(c, model, 1), update, settings, labels=batch.labels,
                              priors=[(RestartPenalty(poison), 1.0)]) for poison in (False, True)}
    clean, poisoned = results[False], results[True]
    objs = poisoned.info["restart_objectives"]
    assert objs[0] == math.inf and poisoned.info["diverged_restarts"] == 1
    assert poisoned.info["best_restart"] != 0 and math.isfinite(poisoned.objective)
    assert clean.info["diverged_restarts"] == 0 and all(math.isfinite(v) for v in clean.info["restart_objectives"])
    torch.testing.assert_close(torch.tensor(objs[1:]), torch.tensor(clean.info["restart_objectives"][1:]))
    assert poisoned.objective == pytest.approx(min(clean.info["restart_objectives"][1:]), rel=1e-5)
    assert bool(torch.isfinite(poisoned.batch.data).all())


# ------------------------------------------------------------------------------------------------ (e) labels


def test_idlg_recovers_single_labels():
    c = case()
    hits = []
    for k in range(10):
        batch = photos([17 * k % 160])
        model, update = observe(c, batch, model_seed=k)
        hits.append(int(idlg_label(view_of(c, model, 1), update)) == int(batch.labels[0]))
    assert sum(hits) == 10


def batch_with_labels(labels: list[int]) -> Batch:
    """Photos with exactly these labels (sample ``i`` has label ``i % 20``; repeats take later crops)."""
    seen: collections.Counter[int] = collections.Counter()
    index = []
    for label in labels:
        index.append(label + NUM_CLASSES * seen[label])
        seen[label] += 1
    return photos(index)


def multiset_accuracy(recovered: list[int], truth: list[int]) -> float:
    return sum((collections.Counter(recovered) & collections.Counter(truth)).values()) / len(truth)


def label_recovery_accuracy(n: int) -> tuple[float, int]:
    """Mean multiset accuracy and exact matches of ``count_labels`` over 10 batches of ``n`` with duplicates."""
    c = case()
    accs, exact = [], 0
    for k in range(10):
        g = gen(100 + k)
        classes = torch.randperm(NUM_CLASSES, generator=g)[: n // 2 + 1].tolist()
        labels = [classes[int(i)] for i in torch.randint(len(classes), (n,), generator=g)]
        batch = batch_with_labels(labels)
        model, update = observe(c, batch, model_seed=k)
        recovered = count_labels(view_of(c, model, n), update).tolist()
        assert len(recovered) == n and recovered == sorted(recovered)
        accs.append(multiset_accuracy(recovered, labels))
        exact += sorted(labels) == recovered
    return sum(accs) / len(accs), exact


def test_count_labels_recovers_a_batch_with_duplicates():
    c = case()
    batch = batch_with_labels([3, 3, 5, 7])
    model, update = observe(c, batch)
    assert count_labels(view_of(c, model, 4), update).tolist() == [3, 3, 5, 7]


@pytest.mark.parametrize("n, bar", [(4, 0.9), (8, 0.85)])
def test_count_labels_accuracy_on_lenet_at_initialisation(n, bar):
    # Measured: 0.975 (9/10 batches exact) for n=4, 0.925 (7/10 exact) for n=8. The misses are LLG's known
    # limit: a class the untrained model already predicts with high probability gets a positive bias gradient.
    accuracy, exact = label_recovery_accuracy(n)
    assert accuracy >= bar and exact >= 6


# ------------------------------------------------------------------------------------------------ (f) fedavg attack


def test_inverting_gradients_reconstructs_from_a_fedavg_delta():
    result = gradleak.run("vision/lenet", "inverting-gradients", batch_size=1, device="cpu", budget=600,
                          sets={"protocol": "fedavg", "local_steps": 2, "labels": "known", "restarts": 1, "lr": 0.3})
    truth = photos([0]).data
    best_constant = float(10 * torch.log10(1 / (truth - truth.mean()).pow(2).mean()))  # about 9.6 dB
    # Measured 16.5 dB (about 5 s on one thread).
    assert result.metrics["psnr"] >= 15.0 > best_constant + 5


# ------------------------------------------------------------------------------------------------ (g) settings


def test_signed_gradient_steps_move_every_pixel_by_the_step_size():
    c = case()
    batch = photos([6])
    model, update = observe(c, batch)
    settings = InversionSettings(objective="l2", optimizer="sgd", lr=0.01, iterations=1, signed=True, boxed=False,
                                 restarts=2)
    rec = invert(view_of(c, model, 1, seed=9), update, settings, labels=batch.labels)
    # Recompute the first step by hand: the same start, the gradient of the matching objective, its sign.
    z0 = torch.randn((2, 1, 3, 32, 32), generator=gen(9)).requires_grad_(True)
    fn = CandidateUpdate(view_of(c, model, 1), update)
    (grad,) = torch.autograd.grad(l2(fn(z0, batch.labels, False), fn.target(update)).sum(), z0)
    best = rec.info["best_restart"]
    torch.testing.assert_close(rec.batch.data, (z0 - 0.01 * grad.sign())[best].detach(), rtol=0, atol=1e-6)
    step = (rec.batch.data - z0[best].detach()).abs()
    assert float(step.min()) == pytest.approx(0.01, abs=1e-6) and float(step.max()) == pytest.approx(0.01, abs=1e-6)
    unsigned = InversionSettings(objective="l2", optimizer="sgd", lr=0.01, iterations=1, signed=False, boxed=False,
                                 restarts=2)
    plain = invert(view_of(c, model, 1, seed=9), update, unsigned, labels=batch.labels)
    assert not torch.allclose(plain.batch.data, rec.batch.data)


def test_box_constraint_keeps_candidates_in_the_data_range():
    c = case()
    batch = photos([8, 9])
    model, update = observe(c, batch)
    data = {}
    for boxed in (True, False):
        settings = InversionSettings(objective="cosine", optimizer="adam", lr=0.5, iterations=5, boxed=boxed,
                                     restarts=2)
        data[boxed] = invert(view_of(c, model, 2), update, settings, labels=batch.labels).batch.data
    assert float(data[True].min()) >= 0.0 and float(data[True].max()) <= 1.0
    assert float(data[False].min()) < 0.0 or float(data[False].max()) > 1.0


def test_step_schedule_decays_at_three_five_and_seven_eighths():
    f = step_schedule(80)
    factors = [f(it) for it in range(80)]
    assert factors[:30] == [1.0] * 30
    assert factors[30:50] == pytest.approx([0.1] * 20)
    assert factors[50:70] == pytest.approx([0.01] * 20)
    assert factors[70:] == pytest.approx([0.001] * 10)
    g = cosine_schedule(80)
    assert g(0) == 1.0 and g(40) == pytest.approx(0.5) and g(80) == pytest.approx(0.0)


def test_invert_applies_the_step_schedule_to_the_optimizer(monkeypatch):
    seen: list[float] = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    c = case()
    batch = photos([1])
    model, update = observe(c, batch)
    settings = InversionSettings(objective="cosine", optimizer="adam", lr=0.2, iterations=8, schedule="step")
    invert(view_of(c, model, 1), update, settings, labels=batch.labels)
    assert seen == pytest.approx([0.2] * 3 + [0.02] * 2 + [0.002] * 2 + [0.0002])
