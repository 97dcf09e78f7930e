"""Metrics: exact values on hand-made reconstructions; the dynamics referee is the real simulator."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gradleak import Batch
from gradleak_rl import learned
from gradleak_rl.envs import env_info, rollout
from gradleak_rl.metrics import ActionAcc, ActionMSE, DynamicsErr, NextStateMSE, RewardMAE, StateMSE, ValidFrac


def _pair(env: str, n: int = 8):
    truth = rollout(env_info(env), n, seed=5)
    return Batch(truth, None, "transition"), truth


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_true_transitions_are_valid(env):
    truth_batch, _ = _pair(env)
    assert float(DynamicsErr()(truth_batch, truth_batch).max()) < 1e-4
    assert torch.equal(ValidFrac()(truth_batch, truth_batch), torch.ones(8, dtype=torch.float64))


def test_dynamics_err_is_rms_in_state_scales():
    truth_batch, t = _pair("CartPole-v1")
    info = env_info("CartPole-v1")
    scale = learned.state_stats("CartPole-v1", info.family, learned.REFEREE_SEED, info.obs_low, info.obs_high).scale
    moved = dataclasses.replace(t, s2=t.s2 + 0.5 * scale.float())  # half a scale in every dimension
    recon = Batch(moved, None, "transition")
    assert torch.allclose(DynamicsErr()(recon, truth_batch), torch.full((8,), 0.5, dtype=torch.float64), atol=1e-4)
    assert float(ValidFrac()(recon, truth_batch).sum()) == 0.0


def test_state_action_reward_errors():
    truth_batch, t = _pair("CartPole-v1", 4)
    recon = dataclasses.replace(t, s=t.s + 0.1, s2=t.s2 - 0.2, a=t.a.flip(-1), r=t.r + torch.tensor([0.0, 1, 2, 3]))
    rb = Batch(recon, None, "transition")
    assert torch.allclose(StateMSE()(rb, truth_batch), torch.full((4,), 0.01, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(NextStateMSE()(rb, truth_batch), torch.full((4,), 0.04, dtype=torch.float64), atol=1e-6)
    assert float(ActionAcc()(rb, truth_batch).sum()) == 0.0
    assert torch.allclose(ActionMSE()(rb, truth_batch), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(RewardMAE()(rb, truth_batch), torch.tensor([0.0, 1, 2, 3], dtype=torch.float64))


def test_continuous_action_accuracy_uses_five_percent_of_the_range():
    truth_batch, t = _pair("Pendulum-v1", 2)
    near = Batch(dataclasses.replace(t, a=t.a + torch.tensor([[0.15], [0.25]])), None, "transition")  # range 4
    assert ActionAcc()(near, truth_batch).tolist() == [1.0, 0.0]
