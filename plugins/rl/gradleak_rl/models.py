"""Federated RL clients' networks: a DQN (online + frozen target Q-network) and a DDPG actor-critic.

Each agent takes packed transitions ``(B, 2 ds + na + 2)`` (see :mod:`gradleak_rl.transitions`) and returns
per-sample terms ``(B, 2)``: column 0 the TD error ``delta``, column 1 the actor's loss term (zero for DQN).
The case's loss is ``mean(delta^2) + mean(actor term)``. Target networks are registered with
``requires_grad=False``: the server sent them (they are the global model at the last sync), the client does
not train them, so the update holds the online networks only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .transitions import Layout

HIDDEN = 64
GAMMA = 0.99


def _mlp(sizes: list[int], generator: torch.Generator, device: torch.device, out_scale: float = 1.0) -> nn.Sequential:
    """ReLU MLP with PyTorch's default uniform(+-1/sqrt(fan_in)) init, drawn from ``generator``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b, device=device)
        bound = 1.0 / math.sqrt(a) * (out_scale if i == len(sizes) - 2 else 1.0)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=generator)
            lin.bias.uniform_(-bound, bound, generator=generator)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _frozen_copy(net: nn.Module) -> nn.Module:
    import copy

    target = copy.deepcopy(net)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def _apply(net: nn.Sequential, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``net`` evaluated with ``params`` (its Linear weights and biases in order) instead of its own."""
    it = iter(params)
    for module in net:
        if isinstance(module, nn.Linear):
            x = torch.nn.functional.linear(x, next(it), next(it))
        else:
            x = module(x)
    return x


class Agent(nn.Module):
    """Common attributes: the packed ``layout``, the environment id and options, the discount ``gamma``."""

    def __init__(self, layout: Layout, env_id: str, env_kwargs: tuple, gamma: float) -> None:
        super().__init__()
        self.layout = layout
        self.env_id = env_id
        self.env_kwargs = env_kwargs
        self.gamma = gamma


class DQNAgent(Agent):
    """DQN (Mnih et al. 2015): ``delta = Q(s, a) - (r + gamma (1 - done) max_a' Q_target(s', a'))``.

    ``a`` enters as a (possibly relaxed) one-hot vector, ``Q(s, a) = <Q(s, .), a>``. We use the squared TD
    error (the RGIA formulation's loss) rather than the Huber loss of the Nature DQN.
    """

    def __init__(self, layout: Layout, env_id: str, env_kwargs: tuple, generator: torch.Generator,
                 device: torch.device, gamma: float = GAMMA, hidden: int = HIDDEN) -> None:
        super().__init__(layout, env_id, env_kwargs, gamma)
        self.q = _mlp([layout.state_dim, hidden, hidden, layout.action_dim], generator, device)
        self.q_target = _frozen_copy(self.q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, a, r, s2, done = self.layout.split(x)
        q_sa = (self.q(s) * a).sum(-1)
        y = r + self.gamma * (1 - done) * self.q_target(s2).max(-1).values
        return torch.stack([q_sa - y, torch.zeros_like(q_sa)], -1)


class DDPGAgent(Agent):
    """DDPG (Lillicrap et al. 2016): critic TD error with target actor and critic, plus the actor loss.

    ``delta = Q(s, a) - (r + gamma (1 - done) Q'(s', mu'(s')))``; actor term ``-Q(s, mu(s))`` with the critic's
    parameters held fixed (the actor's gradient does not reach the critic, as with DDPG's two optimizers).
    ``mu(s) = high * tanh(.)``; the critic sees actions divided by ``high``.
    """

    def __init__(self, layout: Layout, env_id: str, env_kwargs: tuple, generator: torch.Generator,
                 device: torch.device, action_high: float, gamma: float = GAMMA, hidden: int = HIDDEN) -> None:
        super().__init__(layout, env_id, env_kwargs, gamma)
        self.action_high = float(action_high)
        ds, da = layout.state_dim, layout.action_dim
        self.actor = _mlp([ds, hidden, hidden, da], generator, device)
        self.critic = _mlp([ds + da, hidden, hidden, 1], generator, device)
        self.actor_target = _frozen_copy(self.actor)
        self.critic_target = _frozen_copy(self.critic)

    def mu(self, net: nn.Module, s: torch.Tensor) -> torch.Tensor:
        return self.action_high * torch.tanh(net(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, a, r, s2, done = self.layout.split(x)
        h = self.action_high
        q_sa = self.critic(torch.cat([s, a / h], -1)).squeeze(-1)
        q_next = self.critic_target(torch.cat([s2, self.mu(self.actor_target, s2) / h], -1)).squeeze(-1)
        delta = q_sa - (r + self.gamma * (1 - done) * q_next)
        fixed = [p.detach() for p in self.critic.parameters()]
        actor_term = -_apply(self.critic, fixed, torch.cat([s, self.mu(self.actor, s) / h], -1)).squeeze(-1)
        return torch.stack([delta, actor_term], -1)


def agent_loss(outputs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``mean(delta^2) + mean(actor term)``; ``labels`` are unused (the transition holds the action)."""
    return outputs[..., 0].square().mean() + outputs[..., 1].mean()
