"""Federated RL cases: a client's replay batch of real transitions and its DQN or DDPG update.

Each client rolls out its policy in the environment (at the start of training: uniformly random actions,
see :mod:`gradleak_rl.envs`) and computes the loss of its algorithm on a batch of those transitions; the
server sees the FedSGD gradient or FedAvg delta of the online networks (targets are frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from gradleak import Batch, Case, CaseConfig
from gradleak.config import param

from .envs import EnvInfo, check_fits, env_info, rollout
from .models import DDPGAgent, DQNAgent, agent_loss


@dataclass(frozen=True)
class RLCaseConfig(CaseConfig):
    """The protocol and threat-model knobs of :class:`gradleak.CaseConfig`, plus the client's rollout."""

    rollout: int = param(128, "transitions the client collects (its private replay data)")
    rollout_seed: int = param(0, "seed of the client's environment and policy")

    def validate(self, owner: str) -> None:
        super().validate(owner)
        from gradleak.errors import ConfigError

        if self.rollout < 1:
            raise ConfigError(f"{owner}: rollout must be >= 1, got {self.rollout}")


@dataclass(frozen=True)
class HighwayCaseConfig(RLCaseConfig):
    rollout: int = param(32, "transitions the client collects (highway-env costs 10-70 ms a step)")


class RLCase(Case):
    """Base of the RL cases: ``env_id`` (the default environment) and ``algorithm`` (``dqn`` or ``ddpg``)."""

    modality = "transition"
    default_batch_size = 4
    data_is_path = False
    Config = RLCaseConfig
    env_id: ClassVar[str]
    algorithm: ClassVar[str]

    def __init__(self, config=None, device="cpu") -> None:
        super().__init__(config, device)
        self._env: EnvInfo | None = None

    @property
    def env(self) -> EnvInfo:
        if self._env is None:
            self._env = env_info(self.env_id)
        return self._env

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        info = self.env
        if self.algorithm == "dqn":
            return DQNAgent(info.layout, info.env_id, info.kwargs, generator, self.device)
        return DDPGAgent(info.layout, info.env_id, info.kwargs, generator, self.device, action_high=info.action_high)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``mean(delta^2) + mean(actor term)`` (see :mod:`gradleak_rl.models`); labels are unused."""
        return agent_loss(outputs, labels)

    def forward(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.data.packed())

    def load_data(self, path: Path | None) -> Batch:
        """The client's rollout of ``--data ENV_ID`` (default: the case's environment)."""
        wanted = env_info(self.env_id)
        self._env = check_fits(str(path), wanted) if path is not None else wanted
        data = rollout(self._env, self.config.rollout, self.config.rollout_seed)
        return Batch(data.to(self.device), None, self.modality)


def _case(name: str, env_id: str, algorithm: str, paper: str, doc: str, config=RLCaseConfig,
          num_classes: int | None = None) -> type[RLCase]:
    return type(f"{name.title().replace('-', '')}Case", (RLCase,), {
        "__doc__": doc, "name": name, "env_id": env_id, "algorithm": algorithm, "paper": paper,
        "num_classes": num_classes, "Config": config, "__module__": __name__})


DQN = "Mnih et al., Human-level control through deep reinforcement learning, Nature 2015"
DDPG = "Lillicrap et al., Continuous control with deep reinforcement learning, ICLR 2016"

CASES = [
    _case("cartpole-dqn", "CartPole-v1", "dqn", DQN,
          "DQN (2x64 MLP, frozen target) on CartPole-v1 transitions; He 2025's control setting.", num_classes=2),
    _case("acrobot-dqn", "Acrobot-v1", "dqn", DQN,
          "DQN (2x64 MLP, frozen target) on Acrobot-v1 transitions; He 2025's control setting.", num_classes=3),
    _case("pendulum-ddpg", "Pendulum-v1", "ddpg", DDPG,
          "DDPG actor-critic (2x64 MLPs, frozen targets) on Pendulum-v1 transitions; He 2025's control setting."),
    _case("mountaincar-ddpg", "MountainCarContinuous-v0", "ddpg", DDPG,
          "DDPG actor-critic (2x64 MLPs, frozen targets) on MountainCarContinuous-v0 transitions."),
    _case("highway-dqn", "highway-fast-v0", "dqn", DQN,
          "DQN on highway-env's highway-fast-v0 (Kinematics 5x5, 5 meta-actions); He 2025's driving setting. "
          "``--data highway-v0`` runs the full-speed variant (about 8x slower a step).",
          config=HighwayCaseConfig, num_classes=5),
    _case("intersection-dqn", "intersection-v1", "dqn", DQN,
          "DQN on highway-env's intersection-v1 (Kinematics 5x8, 3 longitudinal meta-actions); driving setting.",
          config=HighwayCaseConfig, num_classes=3),
    _case("merge-dqn", "merge-v0", "dqn", DQN,
          "DQN on highway-env's merge-v0 (Kinematics 5x5, 5 meta-actions); He 2025's driving setting.",
          config=HighwayCaseConfig, num_classes=5),
]
