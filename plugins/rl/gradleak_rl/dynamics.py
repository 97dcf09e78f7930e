"""Closed-form dynamics, rewards and terminations of Gymnasium's classic-control tasks, in torch.

``step(family, s, a) -> (s', r, terminated)`` is differentiable in ``s`` and ``a`` (the relaxed action of a
discrete task enters as its expected force/torque), batched over leading dimensions, and reproduces
Gymnasium 1.x's ``step`` on observations (checked against the simulator in the tests). :func:`simulate` is
the reference: the real Gymnasium environment set to a state and stepped, which the metrics use.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

CARTPOLE = dict(g=9.8, mc=1.0, mp=0.1, l=0.5, force=10.0, tau=0.02, x_lim=2.4, th_lim=12 * 2 * math.pi / 360)
ACROBOT = dict(dt=0.2, m1=1.0, m2=1.0, l1=1.0, lc1=0.5, lc2=0.5, I=1.0, g=9.8, v1=4 * math.pi, v2=9 * math.pi)
PENDULUM = dict(g=10.0, m=1.0, l=1.0, dt=0.05, max_speed=8.0, max_torque=2.0)
MOUNTAINCAR = dict(power=0.0015, max_speed=0.07, min_pos=-1.2, max_pos=0.6, goal=0.45)
FAMILIES = ("cartpole", "acrobot", "pendulum", "mountaincar")
#: Observation dimensions that are ``(cos, sin)`` of one angle: they lie on the unit circle.
ANGLE_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {"acrobot": ((0, 1), (2, 3)), "pendulum": ((0, 1),)}


def _cartpole(s: torch.Tensor, a: torch.Tensor):
    p = CARTPOLE
    x, xd, th, thd = s.unbind(-1)
    force = p["force"] * (a[..., 1] - a[..., 0])  # one-hot: +10 for action 1, -10 for action 0
    total, pml = p["mc"] + p["mp"], p["mp"] * p["l"]
    cos, sin = torch.cos(th), torch.sin(th)
    temp = (force + pml * thd.square() * sin) / total
    thacc = (p["g"] * sin - cos * temp) / (p["l"] * (4.0 / 3.0 - p["mp"] * cos.square() / total))
    xacc = temp - pml * thacc * cos / total
    s2 = torch.stack([x + p["tau"] * xd, xd + p["tau"] * xacc, th + p["tau"] * thd, thd + p["tau"] * thacc], -1)
    term = (s2[..., 0].abs() > p["x_lim"]) | (s2[..., 2].abs() > p["th_lim"])
    return s2, torch.ones_like(x), term


def _acrobot_dsdt(y: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
    p = ACROBOT
    m1, m2, l1, lc1, lc2, I1, I2, g = p["m1"], p["m2"], p["l1"], p["lc1"], p["lc2"], p["I"], p["I"], p["g"]
    t1, t2, d1_, d2_ = y.unbind(-1)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * torch.cos(t2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * torch.cos(t2)) + I2
    phi2 = m2 * lc2 * g * torch.cos(t1 + t2 - math.pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * d2_**2 * torch.sin(t2) - 2 * m2 * l1 * lc2 * d2_ * d1_ * torch.sin(t2)
            + (m1 * lc1 + m2 * l1) * g * torch.cos(t1 - math.pi / 2) + phi2)
    # Gymnasium's default "book" dynamics.
    dd2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * d1_**2 * torch.sin(t2) - phi2) / (m2 * lc2**2 + I2 - d2**2 / d1)
    dd1 = -(d2 * dd2 + phi1) / d1
    return torch.stack([d1_, d2_, dd1, dd2], -1)


def _acrobot(s: torch.Tensor, a: torch.Tensor):
    p = ACROBOT
    t1, t2 = torch.atan2(s[..., 1], s[..., 0]), torch.atan2(s[..., 3], s[..., 2])
    y = torch.stack([t1, t2, s[..., 4], s[..., 5]], -1)
    torque = a[..., 2] - a[..., 0]  # AVAIL_TORQUE = [-1, 0, +1]
    dt = p["dt"]
    k1 = _acrobot_dsdt(y, torque)
    k2 = _acrobot_dsdt(y + dt / 2 * k1, torque)
    k3 = _acrobot_dsdt(y + dt / 2 * k2, torque)
    k4 = _acrobot_dsdt(y + dt * k3, torque)
    n = y + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    v1, v2 = n[..., 2].clamp(-p["v1"], p["v1"]), n[..., 3].clamp(-p["v2"], p["v2"])
    t1, t2 = n[..., 0], n[..., 1]
    s2 = torch.stack([torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), v1, v2], -1)
    term = (-torch.cos(n[..., 0]) - torch.cos(n[..., 1] + n[..., 0])) > 1.0
    return s2, torch.where(term, torch.zeros_like(v1), -torch.ones_like(v1)), term


def _pendulum(s: torch.Tensor, a: torch.Tensor):
    p = PENDULUM
    th, thd = torch.atan2(s[..., 1], s[..., 0]), s[..., 2]
    u = a[..., 0].clamp(-p["max_torque"], p["max_torque"])
    cost = th.square() + 0.1 * thd.square() + 0.001 * u.square()  # atan2 already normalises the angle
    nthd = (thd + (3 * p["g"] / (2 * p["l"]) * torch.sin(th) + 3.0 / (p["m"] * p["l"] ** 2) * u) * p["dt"])
    nthd = nthd.clamp(-p["max_speed"], p["max_speed"])
    nth = th + nthd * p["dt"]
    s2 = torch.stack([torch.cos(nth), torch.sin(nth), nthd], -1)
    return s2, -cost, torch.zeros_like(th, dtype=torch.bool)


def _mountaincar(s: torch.Tensor, a: torch.Tensor):
    p = MOUNTAINCAR
    pos, vel = s.unbind(-1)
    force = a[..., 0].clamp(-1.0, 1.0)
    v = (vel + force * p["power"] - 0.0025 * torch.cos(3 * pos)).clamp(-p["max_speed"], p["max_speed"])
    x = (pos + v).clamp(p["min_pos"], p["max_pos"])
    v = torch.where((x <= p["min_pos"]) & (v < 0), torch.zeros_like(v), v)
    term = (x >= p["goal"]) & (v >= 0)
    r = torch.where(term, torch.full_like(v, 100.0), torch.zeros_like(v)) - 0.1 * a[..., 0].square()
    return torch.stack([x, v], -1), r, term


_STEP = {"cartpole": _cartpole, "acrobot": _acrobot, "pendulum": _pendulum, "mountaincar": _mountaincar}


def step(family: str, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One environment step from observations ``s`` and actions ``a`` (one-hot/relaxed or values):
    ``(s', r, terminated)``, batched over the leading dimensions."""
    return _STEP[family](s, a)


def _set_state(env, family: str, obs: np.ndarray) -> None:
    u = env.unwrapped
    if family == "cartpole":
        u.state = np.asarray(obs, dtype=np.float64)
        u.steps_beyond_terminated = None
    elif family == "acrobot":
        u.state = np.array([math.atan2(obs[1], obs[0]), math.atan2(obs[3], obs[2]), obs[4], obs[5]])
    elif family == "pendulum":
        u.state = np.array([math.atan2(obs[1], obs[0]), obs[2]])
    elif family == "mountaincar":
        u.state = np.asarray(obs, dtype=np.float32)
    else:
        raise ValueError(f"no simulator state setter for family {family!r}")


def simulate(env, family: str, s: np.ndarray, a: np.ndarray, discrete: bool) -> tuple[np.ndarray, np.ndarray]:
    """The real simulator: for each row, set ``env`` to observation ``s[i]``, step action ``a[i]``;
    returns ``(s', r)`` as float64 arrays. ``a`` rows are one-hot/relaxed (discrete: argmax) or values."""
    env.reset(seed=0)
    s2, rewards = [], []
    space = env.action_space
    for obs, act in zip(np.asarray(s, dtype=np.float64), np.asarray(a, dtype=np.float64)):
        _set_state(env, family, obs)
        action = int(np.argmax(act)) if discrete else np.clip(act, space.low, space.high).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nxt, r, _, _, _ = env.unwrapped.step(action)
        s2.append(np.asarray(nxt, dtype=np.float64).ravel())
        rewards.append(float(r))
    return np.stack(s2), np.asarray(rewards)
