"""The torch dynamics of the priors and the simulator of the metrics agree with Gymnasium itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradleak_rl import dynamics
from gradleak_rl.envs import env_info, make_env, rollout

CLASSIC = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"]


@pytest.mark.parametrize("env_id", CLASSIC)
def test_torch_dynamics_reproduce_gymnasium(env_id):
    info = env_info(env_id)
    data = rollout(info, 200, seed=3, dtype=torch.float64)
    s2, r, term = dynamics.step(info.family, data.s, data.a)
    # float32 observations round-trip: agreement to float32 precision
    assert torch.allclose(s2, data.s2, atol=1e-5)
    assert torch.allclose(r, data.r, atol=1e-5)
    assert torch.equal(term.double(), data.done)


@pytest.mark.parametrize("env_id", CLASSIC)
def test_simulator_set_to_a_state_steps_like_the_rollout(env_id):
    info = env_info(env_id)
    data = rollout(info, 50, seed=4, dtype=torch.float64)
    ref, rewards = dynamics.simulate(make_env(env_id), info.family, data.s.numpy(), data.a.numpy(), info.layout.discrete)
    assert np.abs(ref - data.s2.numpy()).max() < 1e-5
    assert np.abs(rewards - data.r.numpy()).max() < 1e-5


def test_relaxed_actions_enter_as_expected_force():
    s = torch.zeros(1, 4, dtype=torch.float64)
    half = dynamics.step("cartpole", s, torch.tensor([[0.5, 0.5]], dtype=torch.float64))[0]
    left = dynamics.step("cartpole", s, torch.tensor([[1.0, 0.0]], dtype=torch.float64))[0]
    right = dynamics.step("cartpole", s, torch.tensor([[0.0, 1.0]], dtype=torch.float64))[0]
    assert torch.allclose(half, (left + right) / 2) and not torch.allclose(left, right)
