"""The ``transition`` modality: batches of ``(s, a, r, s', done)`` held as :class:`Transitions`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradleak import Batch, Modality, SearchSpace

from .transitions import Layout, Transitions

if TYPE_CHECKING:
    from gradleak import AttackerView

#: A reconstructed transition is valid when its dynamics error is at most this (see ``metrics.DynamicsErr``).
VALID_TOL = 0.1


class TransitionSpace(SearchSpace):
    """Packed candidate transitions ``(R, B, size)`` decoded from a free tensor ``z`` of the same shape.

    ``s = center + scale * z_s`` (likewise ``s'`` and ``r``); discrete actions are ``softmax(z_a)`` over the
    allowed actions (``action_mask``, e.g. those the last layer shows present), or fixed one-hot rows when
    ``fixed_actions`` is given; continuous actions are ``high * tanh(z_a)``; ``done = sigmoid(z_done)``.
    With ``anchor`` (a function ``(s, a) -> (s', r[, done])``, e.g. the attacker's dynamics and reward), next
    states and rewards are parameterised as residuals from it, ``s' = f(s, a) + scale * z_s'`` and
    ``r = r(s, a) + r_scale * z_r``, starting at zero: the same search space, conditioned so that a dynamics prior
    acts on ``z_s'`` alone; ``encode`` inverts ``decode`` and ``project`` moves candidates onto the anchor.
    ``angle_pairs`` lists ``(cos, sin)`` observation dimensions, normalised onto the unit circle; with
    ``mixed_init`` every second restart starts its states at N(0, 1) in observation units instead of ``center``.
    """

    def __init__(self, layout: Layout, env: str, env_kwargs: tuple = (), action_high: float = 1.0,
                 center: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 r_center: float = 0.0, r_scale: float = 1.0, action_mask: torch.Tensor | None = None,
                 fixed_actions: torch.Tensor | None = None, anchor=None,
                 angle_pairs: tuple[tuple[int, int], ...] = (), mixed_init: bool = False) -> None:
        self.layout, self.env, self.env_kwargs = layout, env, env_kwargs
        self.action_high = action_high
        self.center, self.scale = center, scale
        self.r_center, self.r_scale = r_center, r_scale
        self.action_mask, self.fixed_actions = action_mask, fixed_actions
        self.anchor = anchor
        self.angle_pairs = angle_pairs
        self.mixed_init = mixed_init

    def init(self, restarts: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        dtype = self.center.dtype if self.center is not None else torch.get_default_dtype()
        z = torch.randn((restarts, batch_size, self.layout.size), generator=generator, device=generator.device,
                        dtype=dtype)
        L = self.layout
        if self.center is not None and self.mixed_init:
            # Every second restart starts at N(0, 1) in observation units (the baseline's start) instead of
            # the attacker's rollout statistics: neither start covers every batch (see RGIA's docstring).
            z[1::2, :, L.s] = (z[1::2, :, L.s] - self.center) / self.scale
        if self.anchor is not None:
            z[..., L.s2] = 0.0
            z[..., L.r] = 0.0
        return z

    def project(self, z: torch.Tensor) -> None:
        """In place: move candidates onto the anchor (``s' = f(s, a)``, ``r = r(s, a)`` and, when the anchor gives
        one, ``done`` = its termination flag); no-op without one."""
        if self.anchor is None:
            return
        L = self.layout
        z[..., L.s2] = 0.0
        z[..., L.r] = 0.0
        out = self.anchor(self._states(z[..., L.s]), self.decode_actions(z[..., L.a]))
        if len(out) > 2:
            z[..., L.done] = torch.logit(out[2].to(z.dtype).clamp(1e-3, 1 - 1e-3))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A ``z`` that decodes to packed transitions ``x`` (up to the unit-circle normalisation, fixed actions and
        clamping of saturated actions and ``done``): the inverse of :meth:`decode`, used to carry a candidate
        from one search space to another."""
        L = self.layout
        s, a, r, s2, done = L.split(x)
        center = self.center if self.center is not None else torch.zeros_like(s[..., :1])
        scale = self.scale if self.scale is not None else 1.0
        zs = (s - center) / scale
        if L.discrete:
            za = a.clamp_min(1e-6).log()
        else:
            za = torch.atanh((a / self.action_high).clamp(-1 + 1e-6, 1 - 1e-6))
        if self.anchor is not None:
            sd = self._states(zs)
            f, r_f = self.anchor(sd, self.decode_actions(za))[:2]
            zr, zs2 = (r - r_f) / self.r_scale, (s2 - f) / scale
        else:
            zr, zs2 = (r - self.r_center) / self.r_scale, (s2 - center) / scale
        zd = torch.logit(done.clamp(1e-6, 1 - 1e-6))
        return L.pack(zs, za, zr, zs2, zd)

    def decode_actions(self, za: torch.Tensor) -> torch.Tensor:
        """The actions that ``za`` (the action part of ``z``) decodes to."""
        L = self.layout
        if L.discrete:
            if self.fixed_actions is not None:
                return torch.nn.functional.one_hot(self.fixed_actions, L.action_dim).to(za.dtype).expand_as(za)
            logits = za if self.action_mask is None else za.masked_fill(~self.action_mask, float("-inf"))
            return logits.softmax(-1)
        return self.action_high * torch.tanh(za)

    def _states(self, z: torch.Tensor) -> torch.Tensor:
        s = z if self.center is None else self.center + self.scale * z
        if not self.angle_pairs:
            return s
        cols = list(s.unbind(-1))
        for i, j in self.angle_pairs:  # (cos, sin) observations live on the unit circle
            norm = torch.sqrt(cols[i].square() + cols[j].square()).clamp_min(1e-6)
            cols[i], cols[j] = cols[i] / norm, cols[j] / norm
        return torch.stack(cols, -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        L = self.layout
        zs, za, zr, zs2, zd = L.split(z)
        a = self.decode_actions(za)
        s = self._states(zs)
        if self.anchor is not None:
            f, r_f = self.anchor(s, a)[:2]
            scale = self.scale if self.scale is not None else 1.0
            return L.pack(s, a, r_f + self.r_scale * zr, f + scale * zs2, torch.sigmoid(zd))
        r = self.r_center + self.r_scale * zr
        return L.pack(s, a, r, self._states(zs2), torch.sigmoid(zd))

    def to_batch(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> Batch:
        t = Transitions.unpack(inputs.detach(), self.layout, self.env, self.env_kwargs).hard()
        return Batch(t, None, "transition")


class Transition(Modality):
    """RL transitions (s, a, r, s', done) of a Gymnasium environment; scored by state and dynamics errors.

    Reconstructions are matched to the truth by minimum total state MSE (Hungarian), saved as
    ``truth.npz``/``recon.npz`` (arrays ``s, a, r, s2, done``; ``a`` holds action ids for discrete actions) and
    drawn as ``trajectories.png``. A transition is a success when its state and next state are both within MSE
    0.01 of the true ones (dynamics validity is reported apart, by ``valid_frac``: for highway-env its referee is a
    learned model that real transitions do not meet exactly).
    """

    name = "transition"
    primary_metric = "state_mse"
    default_metrics = ("state_mse", "next_state_mse", "action_acc", "action_mse", "reward_mae", "dynamics_err",
                       "valid_frac")
    success_criterion = "state_mse <= 0.01 and next_state_mse <= 0.01"

    def is_success(self, metrics: Mapping[str, float]) -> bool:
        return float(metrics["state_mse"]) <= 0.01 and float(metrics["next_state_mse"]) <= 0.01

    def search_space(self, view: AttackerView, boxed: bool = True) -> TransitionSpace:
        m = view.model
        return TransitionSpace(m.layout, m.env_id, m.env_kwargs, getattr(m, "action_high", 1.0))

    def pairwise_cost(self, recon: Batch, truth: Batch) -> torch.Tensor:
        """``cost[i, j]`` = MSE between reconstructed state ``i`` and true state ``j``."""
        t = truth.data.s.detach().double()
        r = recon.data.s.detach().to(t.device).double()
        return (r[:, None, :] - t[None, :, :]).pow(2).mean(-1)

    def select(self, batch: Batch, index: torch.Tensor) -> Batch:
        data: Transitions = batch.data
        idx = index.to(data.device)
        return batch.replace(data=data.map(lambda t: t[idx]))

    def concat(self, batches: list[Batch]) -> Batch:
        if not batches:
            raise ValueError("concat needs at least one batch")
        first: Transitions = batches[0].data
        fields = {k: torch.cat([getattr(b.data, k) for b in batches]) for k in ("s", "a", "r", "s2", "done")}
        return Batch(Transitions(**fields, layout=first.layout, env=first.env, env_kwargs=first.env_kwargs),
                     None, self.name)

    def save(self, batch: Batch, directory: Path, stem: str) -> dict[str, str]:
        """Write ``<stem>.npz`` with float64 ``s, r, s2, done`` and ``a`` (ids, int64, or action values)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem}.npz"
        t: Transitions = batch.data
        a = t.action_ids if t.layout.discrete else t.a
        np.savez(path, **{k: v.detach().cpu().double().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
                          for k, v in dict(s=t.s, a=a, r=t.r, s2=t.s2, done=t.done).items()})
        return {stem: str(path)}

    def save_pictures(self, truth: Batch, recon: Batch, directory: Path) -> dict[str, str]:
        """Write ``trajectories.png``: per state dimension, true vs reconstructed s and s' along the batch."""
        from .plots import plot_trajectories

        path = Path(directory) / "trajectories.png"
        plot_trajectories(truth.data, recon.data, path)
        return {"trajectories": str(path)}
