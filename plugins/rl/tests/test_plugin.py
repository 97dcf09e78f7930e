"""Registration through the entry point and the conformance kit."""

from __future__ import annotations

import types

import pytest

import gradleak
from gradleak_rl import plugin
from gradleak_rl.cases import CASES


def test_the_plugin_registers_its_components():
    reg = gradleak.Registry()
    assert reg.infos["rl"].status == "ok", reg.infos["rl"].error
    assert reg.modality("transition").plugin == "rl"
    names = {c.name for c in reg.components("case", plugin="rl")}
    assert names == {"cartpole-dqn", "acrobot-dqn", "pendulum-ddpg", "mountaincar-ddpg", "highway-dqn",
                     "intersection-dqn", "merge-dqn"}
    assert {c.name for c in reg.components("attack", plugin="rl")} == {"rl-dlg", "rgia"}
    assert {c.name for c in reg.components("prior", plugin="rl")} == {"state-prior", "reward-prior", "dynamics-prior"}
    for m in ("state_mse", "next_state_mse", "action_acc", "action_mse", "reward_mae", "dynamics_err", "valid_frac"):
        assert reg.get("metric", m, modality="transition").plugin == "rl"


def test_conformance_kit_on_the_classic_control_cases():
    """Every component but the highway-env cases, whose metrics fit a referee model (the slow test below)."""
    from gradleak.testing import check_plugin

    shim = types.ModuleType("rl_classic")
    for hook in ("register_modalities", "register_attacks", "register_priors", "register_metrics"):
        setattr(shim, hook, getattr(plugin, hook))

    @gradleak.hookimpl
    def register_cases(register):
        for cls in CASES:
            if cls.env_id in ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"):
                register(cls)

    shim.register_cases = register_cases
    check_plugin("rl", gradleak.Registry(entry_points=False, extra=[("rl", shim)]))


@pytest.mark.slow
def test_conformance_kit():
    from gradleak.testing import check_plugin

    check_plugin("rl")
