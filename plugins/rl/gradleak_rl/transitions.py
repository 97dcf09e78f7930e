"""Transition batches: ``(s, a, r, s', done)`` as a frozen dataclass, and their packed tensor layout.

The engine hands models one tensor per sample, so a transition travels packed as
``[s (ds) | a (na) | r | s' (ds) | done]``. Discrete actions are one-hot (or a relaxed probability vector
during an attack) over ``na`` actions; continuous actions are the raw action values in environment units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """Where each field sits in a packed transition of ``2 * state_dim + action_dim + 2`` floats."""

    state_dim: int
    action_dim: int
    discrete: bool

    @property
    def size(self) -> int:
        return 2 * self.state_dim + self.action_dim + 2

    @property
    def s(self) -> slice:
        return slice(0, self.state_dim)

    @property
    def a(self) -> slice:
        return slice(self.state_dim, self.state_dim + self.action_dim)

    @property
    def r(self) -> int:
        return self.state_dim + self.action_dim

    @property
    def s2(self) -> slice:
        start = self.state_dim + self.action_dim + 1
        return slice(start, start + self.state_dim)

    @property
    def done(self) -> int:
        return self.size - 1

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(..., size)`` -> ``s, a, r, s2, done`` views (``r`` and ``done`` without the last dimension)."""
        return x[..., self.s], x[..., self.a], x[..., self.r], x[..., self.s2], x[..., self.done]

    def pack(self, s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s2: torch.Tensor,
             done: torch.Tensor) -> torch.Tensor:
        return torch.cat([s, a, r.unsqueeze(-1), s2, done.unsqueeze(-1)], dim=-1)


@dataclass(frozen=True)
class Transitions:
    """A batch of real or reconstructed transitions of environment ``env`` (a Gymnasium id).

    ``s``, ``s2``: ``(N, ds)`` observations; ``a``: ``(N, na)`` one-hot/probabilities (discrete) or action
    values (continuous); ``r``, ``done``: ``(N,)``. ``env_kwargs`` are the keyword arguments of
    ``gymnasium.make`` that fix the environment's configuration (highway-env's action type).
    """

    s: torch.Tensor
    a: torch.Tensor
    r: torch.Tensor
    s2: torch.Tensor
    done: torch.Tensor
    layout: Layout
    env: str
    env_kwargs: tuple[tuple[str, object], ...] = ()

    def __len__(self) -> int:
        return int(self.s.shape[0])

    @property
    def device(self) -> torch.device:
        return self.s.device

    def to(self, device: torch.device | str) -> Transitions:
        return self.map(lambda t: t.to(device))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Transitions:
        """The batch with ``fn`` applied to every tensor field."""
        return dataclasses.replace(self, s=fn(self.s), a=fn(self.a), r=fn(self.r), s2=fn(self.s2), done=fn(self.done))

    def packed(self) -> torch.Tensor:
        return self.layout.pack(self.s, self.a, self.r, self.s2, self.done)

    @classmethod
    def unpack(cls, x: torch.Tensor, layout: Layout, env: str,
               env_kwargs: tuple[tuple[str, object], ...] = ()) -> Transitions:
        s, a, r, s2, done = layout.split(x)
        return cls(s, a, r, s2, done, layout, env, env_kwargs)

    @property
    def action_ids(self) -> torch.Tensor:
        """Discrete actions as ids ``(N,)`` (the most probable one of a relaxed action)."""
        if not self.layout.discrete:
            raise ValueError("continuous actions have no ids")
        return self.a.argmax(-1)

    def hard(self) -> Transitions:
        """Relaxed discrete actions rounded to one-hot and ``done`` to {0, 1}: what a sample really is."""
        a = self.a
        if self.layout.discrete:
            a = torch.nn.functional.one_hot(self.a.argmax(-1), self.layout.action_dim).to(self.s.dtype)
        return dataclasses.replace(self, a=a, done=(self.done > 0.5).to(self.s.dtype))
