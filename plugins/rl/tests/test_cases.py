"""Cases: the client's update, its models, and refusals of bad input (exit 2)."""

from __future__ import annotations

import pytest
import torch

import gradleak
from gradleak import Batch, DataError
from gradleak.fl.client import client_update
from gradleak_rl.cases import CASES
from gradleak_rl.modality import Transition

BY_NAME = {c.name: c for c in CASES}


def _case(name, **sets):
    cls = BY_NAME[name]
    return cls(gradleak.config.make_config(cls.Config, sets, name) if sets else None)


def test_dqn_update_holds_the_online_network_only():
    case = _case("cartpole-dqn")
    data = case.load_data(None)
    model = case.build_model(torch.Generator().manual_seed(0))
    batch = Transition().select(data, torch.arange(4))
    _, update, _ = client_update(model, case, Transition(), batch, [], torch.Generator().manual_seed(0))
    assert update.kind == "gradient" and set(update.tensors) == {f"q.{i}.{k}" for i in (0, 2, 4) for k in ("weight", "bias")}
    # the gradient is that of mean (Q(s, a) - r - gamma (1 - done) max Q_target(s'))^2
    s, a, r, s2, d = (getattr(batch.data, k) for k in ("s", "a", "r", "s2", "done"))
    y = r + 0.99 * (1 - d) * model.q_target(s2).max(-1).values.detach()
    loss = ((model.q(s) * a).sum(-1) - y).square().mean()
    g = torch.autograd.grad(loss, model.q[4].bias)[0]
    assert torch.allclose(update.tensors["q.4.bias"], g, atol=1e-6)


def test_ddpg_fedavg_delta_moves_actor_and_critic():
    case = _case("pendulum-ddpg", protocol="fedavg", local_steps=3)
    batch = Transition().select(case.load_data(None), torch.arange(4))
    model = case.build_model(torch.Generator().manual_seed(0))
    _, update, _ = client_update(model, case, Transition(), batch, [], torch.Generator().manual_seed(0))
    assert update.kind == "delta" and update.local_steps == 3
    assert {n.split(".")[0] for n in update.tensors} == {"actor", "critic"}
    assert all(float(t.abs().sum()) > 0 for t in update.tensors.values())


def test_data_takes_another_env_id_with_fitting_spaces():
    case = _case("cartpole-dqn", rollout=10)
    data = case.load_data("CartPole-v0")
    assert len(data) == 10 and data.data.env == "CartPole-v0"
    assert case.build_model(torch.Generator().manual_seed(0)).env_id == "CartPole-v0"


def test_unknown_env_is_refused_naming_it():
    with pytest.raises(DataError, match="NoSuchEnv-v9"):
        gradleak.run("rl/cartpole-dqn", "rl-dlg", data="NoSuchEnv-v9", device="cpu", budget=1)


def test_env_whose_spaces_do_not_fit_is_refused_naming_the_spaces():
    with pytest.raises(DataError, match=r"Pendulum-v1.*observation \(3,\).*Box\(1,\).*observation \(4,\).*Discrete\(2\)"):
        gradleak.run("rl/cartpole-dqn", "rl-dlg", data="Pendulum-v1", device="cpu", budget=1)


def test_batch_larger_than_the_rollout_is_refused():
    with pytest.raises(DataError, match="larger than the 8 samples"):
        gradleak.run("rl/cartpole-dqn", "rl-dlg", batch_size=16, sets={"rollout": 8}, device="cpu", budget=1)


def test_cli_exits_2_on_a_bad_env():
    from click.testing import CliRunner

    from gradleak.cli import cli

    result = CliRunner().invoke(cli, ["run", "--case", "rl/acrobot-dqn", "--attack", "rgia",
                                      "--data", "MountainCarContinuous-v0"])
    assert result.exit_code == 2
    assert "MountainCarContinuous-v0" in result.stderr and "Discrete(3)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_highway_case_rolls_out_kinematics_observations():
    case = _case("highway-dqn", rollout=6)
    data = case.load_data(None)
    assert isinstance(data, Batch) and len(data) == 6
    assert data.data.s.shape == (6, 25) and data.data.a.shape == (6, 5)
    model = case.build_model(torch.Generator().manual_seed(0))
    assert torch.isfinite(case.loss(case.forward(model, data), None))


def test_highway_rollouts_are_reproducible():
    """highway-env replaces its action space at every reset; the rollout reseeds it, so one seed is one batch."""
    pytest.importorskip("highway_env")
    from gradleak_rl.envs import env_info, rollout

    a, b = (rollout(env_info("highway-fast-v0"), 6, 0) for _ in range(2))
    assert torch.equal(a.packed(), b.packed())


def test_intersection_observations_are_normalised():
    """intersection-v1 leaves its lane offsets raw (0-100 m); the case gives them ranges like every other feature."""
    pytest.importorskip("highway_env")
    data = _case("intersection-dqn", rollout=12).load_data(None)
    states = torch.cat([data.data.s, data.data.s2])
    assert states.shape[1] == 40 and states.abs().max() <= 1.0
