"""Environments: resolve a Gymnasium id, check its spaces against a case's network, collect rollouts.

All environments are code (Gymnasium classic control, highway-env), so every rollout runs offline. Rollouts
use a uniformly random policy: the behaviour of a DQN client at the start of training (epsilon = 1) and of
DDPG's warm-up phase (Stable-Baselines3's ``learning_starts``), the regime of a federated round's first
replay batches.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from gradleak import DataError

from .transitions import Layout, Transitions

log = logging.getLogger(__name__)

#: Keyword arguments of ``gymnasium.make`` that our cases pass for an id (highway-env's discrete actions).
ENV_KWARGS: dict[str, dict] = {
    "intersection-v1": {"config": {
        "action": {"type": "DiscreteMetaAction", "longitudinal": True, "lateral": False},
        # intersection-v1 observes the lane offsets (long_off, lat_off, ang_off) but leaves them out of its
        # features_range, so they reach the network raw: long_off runs 0-100 m while every other feature
        # lies in [-1, 1]. We give them ranges (a lane is at most 100 m long; lateral offsets beyond two
        # lane widths and headings beyond pi are clipped) so that the DQN sees a normalised state, as on
        # highway-v0 and merge-v0, and state MSEs are comparable across the driving cases.
        "observation": {"type": "Kinematics", "vehicles_count": 5,
                        "features": ["presence", "x", "y", "vx", "vy", "long_off", "lat_off", "ang_off"],
                        "features_range": {"x": [-100, 100], "y": [-100, 100], "vx": [-20, 20],
                                           "vy": [-20, 20], "long_off": [0, 100], "lat_off": [-8, 8],
                                           "ang_off": [-np.pi, np.pi]},
                        "absolute": True, "flatten": False, "observe_intentions": False},
    }},
}


@dataclass(frozen=True)
class EnvInfo:
    """What a case needs to know about an environment: its layout, action bounds and dynamics family.

    ``family`` names the closed-form torch dynamics of :mod:`gradleak_rl.dynamics` (``cartpole``,
    ``acrobot``, ``pendulum``, ``mountaincar``) or ``learned`` for every other environment.
    """

    env_id: str
    layout: Layout
    obs_shape: tuple[int, ...]
    action_low: float
    action_high: float
    obs_low: tuple[float, ...]
    obs_high: tuple[float, ...]
    family: str

    @property
    def kwargs(self) -> tuple[tuple[str, object], ...]:
        return tuple(ENV_KWARGS.get(self.env_id, {}).items())


def _import_envs() -> None:
    import gymnasium  # noqa: F401

    try:
        import highway_env  # noqa: F401  (registers highway-v0, merge-v0, intersection-v1, ...)
    except ImportError:
        log.debug("highway-env is not installed; its environments are unavailable")


def make_env(env_id: str, kwargs: tuple[tuple[str, object], ...] | None = None):
    """``gymnasium.make(env_id)`` with our case's configuration; DataError when the id is unknown."""
    import gymnasium as gym

    _import_envs()
    options = dict(kwargs) if kwargs is not None else ENV_KWARGS.get(env_id, {})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gym.make(env_id, **options)
    except Exception as exc:  # gymnasium raises several types (NameNotFound, VersionNotFound, DependencyNotInstalled)
        raise DataError(f"--data {env_id}: not an installed Gymnasium environment ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0]}); pass a Gymnasium id such as CartPole-v1, or "
                        f'pip install "gradleak[rl]" for highway-env') from None


_FAMILIES = {"CartPoleEnv": "cartpole", "AcrobotEnv": "acrobot", "PendulumEnv": "pendulum",
             "Continuous_MountainCarEnv": "mountaincar"}


@functools.lru_cache(maxsize=32)
def env_info(env_id: str) -> EnvInfo:
    """Describe ``env_id``; DataError when it is not installed or its spaces are neither Box nor Discrete."""
    import gymnasium as gym

    env = make_env(env_id)
    obs, act = env.observation_space, env.action_space
    env.close()
    if not isinstance(obs, gym.spaces.Box):
        raise DataError(f"--data {env_id}: observation space {obs} is not a Box; the rl cases need vector observations")
    ds = int(np.prod(obs.shape))
    if isinstance(act, gym.spaces.Discrete):
        layout, lo, hi = Layout(ds, int(act.n), True), 0.0, float(act.n - 1)
    elif isinstance(act, gym.spaces.Box) and len(act.shape) == 1:
        layout, lo, hi = Layout(ds, int(act.shape[0]), False), float(act.low.min()), float(act.high.max())
    else:
        raise DataError(f"--data {env_id}: action space {act} is neither Discrete nor a 1-d Box")
    family = _FAMILIES.get(type(env.unwrapped).__name__, "learned")
    low = tuple(np.broadcast_to(obs.low, obs.shape).ravel().tolist())
    high = tuple(np.broadcast_to(obs.high, obs.shape).ravel().tolist())
    return EnvInfo(env_id, layout, tuple(obs.shape), lo, hi, low, high, family)


def check_fits(env_id: str, want: EnvInfo) -> EnvInfo:
    """The env of ``--data`` must have the spaces of the case's network: same state size and action kind/size."""
    got = env_info(env_id)
    if got.layout != want.layout:
        kind = lambda i: (f"Discrete({i.layout.action_dim})" if i.layout.discrete  # noqa: E731
                          else f"Box({i.layout.action_dim},)")
        raise DataError(f"--data {env_id}: its spaces (observation {got.obs_shape}, action {kind(got)}) do not fit "
                        f"this case's network (observation {want.obs_shape}, action {kind(want)}); pick an env with "
                        f"those spaces, such as {want.env_id}")
    return got


def rollout(info: EnvInfo, steps: int, seed: int, dtype: torch.dtype = torch.float32) -> Transitions:
    """``steps`` transitions of a uniformly random policy, episodes concatenated in order (resets at ends).

    ``done`` is Gymnasium's ``terminated`` (a time-limit truncation still bootstraps, as in SB3's DQN).
    Deterministic in ``seed``: highway-env builds a new, unseeded action space at every reset, so a space that
    a reset replaced is seeded again (classic control keeps its space, seeded once).
    """
    env = make_env(info.env_id, info.kwargs)
    env.action_space.seed(seed)
    seeded = env.action_space
    obs, _ = env.reset(seed=seed)
    if env.action_space is not seeded:
        env.action_space.seed(seed)
        seeded = env.action_space
    rows: list[tuple] = []
    episode = 0
    L = info.layout
    while len(rows) < steps:
        action = env.action_space.sample()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nxt, reward, terminated, truncated, _ = env.step(action)
        if L.discrete:
            a = np.zeros(L.action_dim, dtype=np.float64)
            a[int(action)] = 1.0
        else:
            a = np.asarray(action, dtype=np.float64).ravel()
        rows.append((np.ravel(obs), a, float(reward), np.ravel(nxt), float(terminated)))
        obs = nxt
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + 7919 * episode)
            if env.action_space is not seeded:
                env.action_space.seed(seed + 7919 * episode)
                seeded = env.action_space
    env.close()
    s, a, r, s2, d = (np.stack([row[i] for row in rows]) for i in range(5))
    t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=dtype)  # noqa: E731
    return Transitions(t(s), t(a), t(r), t(s2), t(d), L, info.env_id, info.kwargs)


@functools.lru_cache(maxsize=16)
def attacker_rollouts(env_id: str, steps: int, seed: int) -> Transitions:
    """Rollouts the attacker collects itself (the environment is public); cached per process."""
    return rollout(env_info(env_id), steps, seed)
