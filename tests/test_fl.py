"""The FL simulation: what a client sends under each protocol and mode, and what the runner lets the attacker see.

Every expected value is recomputed here by independent, hand-written code (``torch.autograd.grad`` on the mean
loss, a plain ``torch.optim.SGD`` loop, a manual BatchNorm), never by calling the code under test.
"""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradleak
from gradleak import Batch, CapabilityError, DataError, Reconstruction, ThreatModel
from gradleak.device import generator as seeded_generator
from gradleak.fl.client import client_update
from gradleak_vision import plugin as vision_plugin
from gradleak_vision.cases import LeNetCase, LeNetConfig
from gradleak_vision.data import photo_crops
from gradleak_vision.modality import Image

IMAGE = Image()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def photos(n: int, start: int = 0) -> Batch:
    """``n`` consecutive 3x32x32 photo crops (labels ``i % 20``, all distinct for ``n <= 20``)."""
    return IMAGE.select(photo_crops(), torch.arange(start, start + n))


def small(batch: Batch) -> Batch:
    """The same photos at 8x8, for the tiny BatchNorm model."""
    return batch.replace(data=F.avg_pool2d(batch.data, 4))


def lenet_case(**config) -> LeNetCase:
    return LeNetCase(LeNetConfig(**config), "cpu")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"the client changed the server's {k}"


class BNDropoutCase(LeNetCase):
    """conv 3x3 -> BatchNorm2d -> ReLU -> Dropout(0.5) -> linear, on 8x8 photos; running stats not the identity."""

    name = "bn-dropout"

    def build_model(self, generator: torch.Generator) -> nn.Module:
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                              nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 20))
        with torch.no_grad():
            for p in (model[0].weight, model[0].bias, model[5].weight, model[5].bias):
                p.uniform_(-0.5, 0.5, generator=generator)
            model[1].weight.uniform_(0.5, 1.5, generator=generator)
            model[1].bias.uniform_(-0.2, 0.2, generator=generator)
            model[1].running_mean.uniform_(-0.5, 0.5, generator=generator)
            model[1].running_var.uniform_(0.5, 2.0, generator=generator)
        return model

    def load_data(self, path):
        return small(photo_crops())


# ------------------------------------------------------------------------------------------------ (a) fedsgd


def test_fedsgd_update_is_the_gradient_of_the_mean_loss():
    case = lenet_case()
    model = case.build_model(gen(0))
    before = snapshot(model)
    batch = photos(4)
    trained_on, clean, sent = client_update(model, case, IMAGE, batch, [], gen())
    assert trained_on is batch and sent is clean  # no defense
    assert sent.kind == "gradient" and sent.num_samples == 4
    names = [n for n, _ in model.named_parameters()]
    assert list(sent.tensors) == names
    loss = F.cross_entropy(model(batch.data), batch.labels)  # mean over the batch
    expected = torch.autograd.grad(loss, list(model.parameters()))
    for name, g in zip(names, expected):
        torch.testing.assert_close(sent.tensors[name], g, rtol=1e-5, atol=1e-7)
    assert float(expected[-1].abs().sum()) > 0
    assert_unchanged(model, before)


# ------------------------------------------------------------------------------------------------ (b) fedavg


def hand_written_fedavg(model, batch, steps, lr, lbs, epochs):
    """``epochs`` x ``steps`` plain SGD steps on consecutive mini-batches of ``lbs``, cycled; returns the delta."""
    local = copy.deepcopy(model)
    opt = torch.optim.SGD(local.parameters(), lr=lr)
    starts = list(range(0, len(batch), lbs))
    k = 0
    for _ in range(epochs):
        for _ in range(steps):
            a = starts[k % len(starts)]
            k += 1
            opt.zero_grad()
            F.cross_entropy(local(batch.data[a:a + lbs]), batch.labels[a:a + lbs]).backward()
            opt.step()
    return {n: p.detach() - p0.detach() for (n, p), p0 in zip(local.named_parameters(), model.parameters())}


@pytest.mark.parametrize("steps, lbs, epochs", [(3, 2, 1), (3, 2, 2), (2, 2, 2), (4, 3, 1), (1, None, 1)])
def test_fedavg_delta_equals_a_hand_written_sgd_loop(steps, lbs, epochs):
    lr, n = 0.05, 5
    case = lenet_case(protocol="fedavg", local_steps=steps, local_lr=lr, local_batch_size=lbs, epochs=epochs)
    model = case.build_model(gen(1))
    before = snapshot(model)
    batch = photos(n, start=3)
    _, update, _ = client_update(model, case, IMAGE, batch, [], gen())
    expected = hand_written_fedavg(model, batch, steps, lr, lbs or n, epochs)
    assert update.kind == "delta" and update.num_samples == n
    meta = (update.local_steps, update.local_lr, update.local_batch_size, update.epochs)
    assert meta == (steps, lr, lbs or n, epochs)
    assert list(update.tensors) == list(expected)
    for name, delta in expected.items():
        torch.testing.assert_close(update.tensors[name], delta, rtol=1e-4, atol=1e-6)
    assert float(expected["fc.0.bias"].abs().max()) > 1e-4  # the model really moved
    assert_unchanged(model, before)


def test_fedavg_local_batch_larger_than_the_batch_is_refused():
    case = lenet_case(protocol="fedavg", local_steps=2, local_batch_size=8)
    with pytest.raises(DataError, match="local_batch_size=8"):
        client_update(case.build_model(gen()), case, IMAGE, photos(4), [], gen())


# ------------------------------------------------------------------------------------------------ (c) aggregate


@pytest.mark.parametrize("steps", [1, 2])
def test_aggregate_is_the_sample_weighted_mean_of_the_clients_updates(steps):
    agg_case = lenet_case(protocol="aggregate", clients=2, local_steps=steps, local_lr=0.1)
    one_case = lenet_case(protocol="fedsgd" if steps == 1 else "fedavg", local_steps=steps, local_lr=0.1)
    model = agg_case.build_model(gen(2))
    before = snapshot(model)
    batch = photos(4, start=10)
    _, agg, _ = client_update(model, agg_case, IMAGE, batch, [], gen())
    halves = [client_update(model, one_case, IMAGE, IMAGE.select(batch, torch.arange(2 * c, 2 * c + 2)), [],
                            gen())[1] for c in range(2)]
    assert agg.num_samples == 4 and agg.num_clients == 2
    assert agg.kind == ("gradient" if steps == 1 else "delta")
    for name, t in agg.tensors.items():
        expected = sum(h.num_samples * h.tensors[name] for h in halves) / 4
        torch.testing.assert_close(t, expected, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(t, halves[0].tensors[name])
    if steps == 1:  # equal halves: the mean of the two mean gradients is the whole batch's gradient
        loss = F.cross_entropy(model(batch.data), batch.labels)
        for (name, _), g in zip(model.named_parameters(), torch.autograd.grad(loss, list(model.parameters()))):
            torch.testing.assert_close(agg.tensors[name], g, rtol=1e-5, atol=1e-7)
    assert_unchanged(model, before)


def test_aggregate_refuses_a_batch_not_divisible_by_the_clients():
    case = lenet_case(protocol="aggregate", clients=2)
    with pytest.raises(DataError, match="clients=2"):
        client_update(case.build_model(gen()), case, IMAGE, photos(5), [], gen())


# ------------------------------------------------------------------------------------------------ (d) train vs eval


def manual_gradients(model: nn.Module, batch: Batch, train: bool, dropout_scale: torch.Tensor | None):
    """The gradient of the mean loss of :class:`BNDropoutCase`'s model, with BatchNorm written out by hand."""
    conv, bn, lin = model[0], model[1], model[5]
    z = F.conv2d(batch.data, conv.weight, conv.bias, padding=1)
    if train:
        mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    shape = (1, -1, 1, 1)
    zn = (z - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)
    h = F.relu(zn).flatten(1)
    if dropout_scale is not None:
        h = h * dropout_scale
    loss = F.cross_entropy(F.linear(h, lin.weight, lin.bias), batch.labels)
    names = [n for n, _ in model.named_parameters()]
    return dict(zip(names, torch.autograd.grad(loss, list(model.parameters())))), (z.mean((0, 2, 3)), z.var((0, 2, 3)))


def test_train_mode_uses_batch_statistics_and_dropout_eval_mode_running_statistics():
    model = BNDropoutCase(LeNetConfig(), "cpu").build_model(gen(3))
    model.eval()
    before = snapshot(model)
    batch = small(photos(6))
    scales = []

    def record(module, inputs, output):  # runs inside the client's copy too (deepcopy keeps hooks)
        x = inputs[0]
        scales.append(torch.where(x != 0, output / torch.where(x != 0, x, 1), 0).detach())

    model[4].register_forward_hook(record)
    updates = {}
    for mode in ("train", "eval"):
        case = BNDropoutCase(LeNetConfig(mode=mode), "cpu")
        updates[mode] = client_update(model, case, IMAGE, batch, [], gen())[2]
    train_scale, eval_scale = scales
    assert set(train_scale.unique().tolist()) <= {0.0, 2.0} and 0.0 in train_scale.unique().tolist()
    assert bool((eval_scale[eval_scale != 0] == 1).all())  # dropout off in eval

    expected_train, (batch_mean, batch_var) = manual_gradients(model, batch, True, train_scale)
    expected_eval, _ = manual_gradients(model, batch, False, None)
    for name in expected_train:
        torch.testing.assert_close(updates["train"].tensors[name], expected_train[name], rtol=1e-4, atol=2e-5)
        torch.testing.assert_close(updates["eval"].tensors[name], expected_eval[name], rtol=1e-4, atol=2e-5)
    # With batch statistics the conv bias is cancelled by the mean subtraction: its gradient vanishes.
    assert float(updates["train"].tensors["0.bias"].abs().max()) < 1e-4
    assert float(updates["eval"].tensors["0.bias"].abs().max()) > 1e-2
    diff = max(float((updates["train"].tensors[n] - updates["eval"].tensors[n]).abs().max()) for n in expected_train)
    assert diff > 1e-3

    # The server's model (parameters and BatchNorm buffers) is untouched; the client's copy moved its own.
    assert_unchanged(model, before)
    buffers = updates["train"].buffers
    torch.testing.assert_close(buffers["1.running_mean"], 0.9 * before["1.running_mean"] + 0.1 * batch_mean.detach())
    torch.testing.assert_close(buffers["1.running_var"], 0.9 * before["1.running_var"] + 0.1 * batch_var.detach())
    assert int(buffers["1.num_batches_tracked"]) == 1
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(updates["eval"].buffers[k], before[k])


# ------------------------------------------------------------------------------------------------ (e) determinism


def test_same_generator_seed_gives_identical_updates_even_with_dropout():
    case = BNDropoutCase(LeNetConfig(mode="train", protocol="fedavg", local_steps=2, local_batch_size=3), "cpu")
    model = case.build_model(gen(4))
    batch = small(photos(6))
    rng_before = torch.random.get_rng_state()
    a, b, c = (client_update(model, case, IMAGE, batch, [], gen(s))[2] for s in (7, 7, 8))
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left as it was
    for name in a.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name]), name
    assert any(not torch.equal(a.tensors[n], c.tensors[n]) for n in a.tensors)  # dropout is live: seeds matter


def test_run_is_deterministic_under_a_seed():
    kw = dict(sets={"restarts": 1}, budget=3, device="cpu")
    first = gradleak.run("vision/lenet", "inverting-gradients", seed=0, **kw)
    again = gradleak.run("vision/lenet", "inverting-gradients", seed=0, **kw)
    other = gradleak.run("vision/lenet", "inverting-gradients", seed=1, **kw)
    assert first.metrics == again.metrics and first.per_sample == again.per_sample
    assert first.metrics["psnr"] != other.metrics["psnr"]


# ------------------------------------------------------------------------------------------------ (f) threat model

SEEN: list[tuple[gradleak.Update, gradleak.AttackerView]] = []


class Spy(gradleak.Attack):
    """Records the update and view the runner hands it; guesses grey images."""

    name = "spy"
    modalities = frozenset({"image"})

    def reconstruct(self, update, view, budget=None):
        SEEN.append((update, view))
        n = view.batch_size
        grey = torch.full((n, *view.sample_shape), 0.5)
        return Reconstruction(Batch(grey, torch.zeros(n, dtype=torch.long), "image"))


class NeedsLabels(Spy):
    """A spy that declares it needs the true labels."""

    name = "needs-labels"
    requires = frozenset({"labels"})


@pytest.fixture(scope="module")
def reg() -> gradleak.Registry:
    module = types.ModuleType("gradleak_test_fl_plugin")

    @gradleak.hookimpl
    def register_attacks(register):
        register(Spy)
        register(NeedsLabels)

    @gradleak.hookimpl
    def register_cases(register):
        register(BNDropoutCase)

    module.register_attacks, module.register_cases = register_attacks, register_cases
    registry = gradleak.Registry(entry_points=False, extra=[("vision", vision_plugin), ("t", module)])
    assert registry.infos["t"].status == "ok", registry.infos["t"].error
    return registry


def spy(reg, case="t/bn-dropout", **sets):
    SEEN.clear()
    gradleak.run(case, "spy", batch_size=4, sets=sets, device="cpu", reg=reg)
    assert len(SEEN) == 1
    return SEEN[0]


def test_threat_model_capabilities():
    assert ThreatModel().capabilities == {"hyperparams"}
    full = ThreatModel(labels=True, bn_stats=True, hyperparams=False, surrogate=True, modify_model=True)
    assert full.capabilities == {"labels", "bn_stats", "surrogate", "modify_model"}
    ThreatModel(labels=True).require({"labels", "hyperparams"}, "attack 'x'")  # granted: no error


@pytest.mark.parametrize("capability, fix", [("labels", "--set labels=known"), ("bn_stats", "--set bn_stats=known"),
                                             ("hyperparams", "--set hyperparams=known"),
                                             ("surrogate", "--set surrogate=known"),
                                             ("modify_model", "--set malicious=true")])
def test_require_names_the_missing_capability_and_the_fix(capability, fix):
    threat = ThreatModel(hyperparams=False)
    with pytest.raises(CapabilityError) as err:
        threat.require({capability}, "attack 'spy'")
    message = str(err.value)
    assert "attack 'spy'" in message and repr(capability) in message and fix in message


def test_require_lists_only_what_is_missing():
    with pytest.raises(CapabilityError) as err:
        ThreatModel(labels=True).require({"labels", "bn_stats", "surrogate"}, "prior 'bn'")
    message = str(err.value)
    assert "'bn_stats'" in message and "'surrogate'" in message and "'labels'" not in message


def test_runner_refuses_an_attack_whose_capability_is_withheld(reg):
    with pytest.raises(CapabilityError, match=r"'labels'.*--set labels=known"):
        gradleak.plan("vision/lenet", "needs-labels", device="cpu", reg=reg)
    SEEN.clear()
    gradleak.run("vision/lenet", "needs-labels", sets={"labels": "known"}, device="cpu", reg=reg)
    assert len(SEEN) == 1


def test_runner_grants_labels_only_when_known(reg):
    _, view = spy(reg)
    assert view.labels is None and "labels" not in view.capabilities
    _, view = spy(reg, labels="known")
    assert torch.equal(view.labels, photo_crops().labels[:4]) and "labels" in view.capabilities


def test_runner_strips_local_hyperparameters_when_unknown(reg):
    update, view = spy(reg, protocol="fedavg", local_steps=2, local_lr=0.05, local_batch_size=2)
    assert update.kind == "delta" and update.local_lr == 0.05 and update.local_batch_size == 2
    assert view.protocol is not None and view.protocol.local_lr == 0.05
    update, view = spy(reg, protocol="fedavg", local_steps=2, local_lr=0.05, local_batch_size=2, hyperparams="unknown")
    assert update.kind == "delta" and update.local_lr is None and update.local_batch_size is None
    assert view.protocol is None and "hyperparams" not in view.capabilities


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_runner_grants_bn_statistics_only_when_known(reg, mode):
    _, view = spy(reg, mode=mode)
    assert view.bn_stats is None
    _, view = spy(reg, mode=mode, bn_stats="known")
    truth = small(photos(4))
    z = F.conv2d(truth.data, view.model[0].weight, view.model[0].bias, padding=1)
    assert set(view.bn_stats) == {"1"}
    mean, var = view.bn_stats["1"]
    torch.testing.assert_close(mean, z.mean((0, 2, 3)).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, z.var((0, 2, 3), unbiased=False).detach(), rtol=1e-5, atol=1e-6)
    assert view.model.training == (mode == "train")
    # The model the attacker holds is the one the server sent: neither the stats pass nor the client moved it.
    sent = BNDropoutCase(LeNetConfig(), "cpu").build_model(seeded_generator(torch.device("cpu"), 0))
    assert_unchanged(view.model, snapshot(sent))


def test_run_with_dropout_in_train_mode_is_deterministic(reg):
    kw = dict(sets={"restarts": 1, "mode": "train"}, budget=3, batch_size=2, device="cpu", reg=reg)
    first = gradleak.run("t/bn-dropout", "inverting-gradients", **kw)
    again = gradleak.run("t/bn-dropout", "inverting-gradients", **kw)
    assert first.per_sample == again.per_sample


def test_client_context_loss_with_replaced_parameters_matches_a_model_carrying_them():
    import copy

    from gradleak import ClientContext

    case = lenet_case()
    model = case.build_model(gen())
    batch = photos(2)
    ctx = ClientContext(model, case, IMAGE, batch)
    shifted = {n: p.detach() + 0.01 for n, p in model.named_parameters()}
    other = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in other.named_parameters():
            p.copy_(shifted[n])
    with torch.no_grad():
        expected = case.loss(case.forward(other, batch), batch.labels)
        assert float(ctx.loss(shifted)) == pytest.approx(float(expected), rel=1e-6)
        assert float(ctx.loss()) == pytest.approx(float(case.loss(case.forward(model, batch), batch.labels)), rel=1e-6)
        assert float(ctx.loss(shifted)) != pytest.approx(float(ctx.loss()), rel=1e-6)
