"""Gradient inversion of federated RL updates: the ``rl-dlg`` baseline and ``rgia`` (He 2025).

Both find packed transitions whose client update matches the observed one,

    min_{s, a, r, s', done}  ||U(s, a, r, s', done) - U_obs||^2 / ||U_obs||^2  +  sum_j w_j R_j,

with ``U`` the client's FedSGD gradient or unrolled FedAvg delta of the case's RL loss (the core's
``CandidateUpdate``), all restarts optimised together with Adam under a cosine schedule. The matching term
is normalised by the observed update's energy so that prior weights mean the same for every case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from gradleak import Attack, AttackerView, Prior, Reconstruction, Update
from gradleak.config import param, require_positive
from gradleak.engine import CandidateUpdate, l2, last_layer, per_restart
from gradleak.engine.optim import cosine_schedule
from gradleak.errors import DataError

from .dynamics import ANGLE_PAIRS
from .modality import TransitionSpace
from .priors import DynamicsPrior, RewardPrior, StatePrior, attacker_knowledge, next_state, reward

TRANSITION = frozenset({"transition"})


def match_update(view: AttackerView, update: Update, space: TransitionSpace, priors: Sequence[tuple[Prior, float]],
                 iterations: int, lr: float, restarts: int, warmup: float = 0.0, start: TransitionSpace | None = None,
                 refine_lr: float = 1.0) -> Reconstruction:
    """Adam on ``z`` (decoded by ``space``) for ``iterations`` steps; the restart with the lowest objective wins.

    ``warmup``: a two-stage continuation (match first, then project). For this share of the iterations the
    priors are off: plain matching, in ``start`` (the baseline's search space, from its initialisation) when
    given, else in ``space``. Then every candidate is carried into ``space`` (``space.encode``) and projected
    onto the priors' manifold (``space.project``: ``s' = f(s, a)``, ``r = r(s, a)``, ``done = term(f(s, a))``),
    and Adam restarts with its own cosine schedule at ``refine_lr * lr`` on the full objective. The best
    iterate is tracked in the last stage only."""
    if not update.is_finite():
        raise DataError("the update contains NaN or inf values; the attack cannot match it")
    fn = CandidateUpdate(view, update)
    target = fn.target(update)
    energy = torch.stack([t.pow(2).sum() for t in target]).sum().clamp_min(1e-30)
    B = view.batch_size
    dtype = target[0].dtype
    switch = int(warmup * iterations) if priors else 0
    first = start if (start is not None and switch > 0) else space
    z = first.init(restarts, B, view.generator).to(dtype).requires_grad_(True)
    unused = torch.zeros(B, device=z.device, dtype=dtype)  # the transition carries the action; no labels

    def evaluate(on: TransitionSpace = space, with_priors: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        x = on.decode(z)
        matching = l2(fn(x, unused, per_restart_labels=False), target) / energy
        total = matching
        for prior, weight in priors:
            if weight and with_priors:
                total = total + weight * prior.penalty(x, view)
        return matching, total

    best_total = torch.full((restarts,), float("inf"), device=z.device, dtype=dtype)
    best_z = z.detach().clone()
    with fn.numerics():  # the chosen precision, backward passes included
        for begin, stop in ((0, switch), (switch, iterations)):
            if stop <= begin:
                continue
            last = stop == iterations
            step = lr
            if begin > 0:
                with torch.no_grad():
                    if first is not space:
                        z.copy_(space.encode(first.decode(z)))
                    space.project(z)
                    best_z = z.detach().clone()
                step = lr * refine_lr
            opt = torch.optim.Adam([z], lr=step)
            lr_at = cosine_schedule(stop - begin)
            for it in range(begin, stop):
                for group in opt.param_groups:
                    group["lr"] = step * lr_at(it - begin)
                opt.zero_grad()
                _, total = evaluate(space if last else first, with_priors=last)
                finite = torch.isfinite(total)
                torch.where(finite, total, torch.zeros_like(total)).sum().backward()
                with torch.no_grad():
                    better = finite & (total < best_total) if last else finite
                    best_total = torch.where(better, total.detach(), best_total) if last else best_total
                    # torch.where, not masked assignments: boolean indexing waits for the device (nonzero).
                    best_z.copy_(torch.where(per_restart(better, z), z.detach(), best_z))
                    z.grad.copy_(torch.where(per_restart(finite, z), z.grad, 0.0))
                opt.step()
                with torch.no_grad():
                    good = torch.isfinite(z).flatten(1).all(1)
                    z.copy_(torch.where(per_restart(good, z), z, best_z))
                if view.progress is not None and (it % 10 == 0 or it == iterations - 1):
                    view.report(it + 1, iterations, float(best_total.min()))
        with torch.no_grad():
            z.copy_(best_z)
        with torch.enable_grad():
            matching, total = evaluate()
    total = torch.where(torch.isfinite(total), total.detach(), torch.full_like(total, float("inf")))
    best = int(total.argmin())
    with torch.no_grad():
        x = space.decode(z)[best].detach()
    return Reconstruction(
        batch=space.to_batch(x, None), objective=float(total[best]),
        info={"restart_objectives": [float(v) for v in total], "matching": float(matching[best].detach()),
              "best_restart": best, "iterations": iterations},
    )


@dataclass(frozen=True)
class RLDLGConfig:
    iterations: int = param(2000, "Adam iterations")
    lr: float = param(0.1, "Adam step size (cosine decay to 0)")
    restarts: int = param(4, "random restarts optimised together; the lowest objective wins")

    def validate(self, owner: str) -> None:
        require_positive(self, owner, "iterations", "lr", "restarts")


class RLDLG(Attack):
    """DLG on transitions: joint matching of states, softmax-relaxed actions, rewards and next states.

    Zhu et al., "Deep Leakage from Gradients", NeurIPS 2019, applied to FRL updates as the baseline of He 2025.
    Every field starts from N(0, 1) in observation units and is free; discrete actions are softmax(logits),
    continuous ones ``high * tanh``, ``done`` a sigmoid. We use Adam with a cosine schedule instead of DLG's
    L-BFGS because the max in the TD target makes L-BFGS's line search stall.
    """

    name = "rl-dlg"
    modalities = TRANSITION
    Config = RLDLGConfig
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019 (as the baseline of He 2025)"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        space = view.modality.search_space(view)
        return match_update(view, update, space, (), budget or c.iterations, c.lr, c.restarts)


def recover_actions(view: AttackerView, update: Update) -> torch.Tensor:
    """Which discrete actions the batch holds: a DQN's last-layer row ``k`` receives gradient only through
    ``Q(s_i, k)`` of transitions with ``a_i = k``, so the rows (weight and bias) of absent actions are exactly
    zero, in FedSGD and in FedAvg alike. Returns a boolean mask over actions."""
    W, b = last_layer(view, update)
    rows = W.abs().sum(1) + (b.abs() if b is not None else 0)
    present = rows > 1e-7 * rows.max().clamp_min(1e-30)
    if not bool(present.any()):
        present[:] = True
    return present


@dataclass(frozen=True)
class RGIAConfig(RLDLGConfig):
    state_weight: float = param(0.001, "weight of the state prior (bounds + rollout density)")
    reward_weight: float = param(10.0, "weight of the reward prior")
    dynamics_weight: float = param(10.0, "weight of the dynamics prior")
    recover_actions: bool = param(True, "read the present discrete actions off the last layer first")
    match_first: float = param(0.5, "share of the restarts that match first, without priors, in the baseline's "
                               "search space, then project onto f and r (the others optimise the full objective)")
    warmup: float = param(0.5, "share of the iterations the match-first restarts spend matching without priors")
    refine_lr: float = param(0.1, "step size of the match-first restarts after the projection, relative to lr")
    circle: bool = param(True, "keep (cos, sin) observation pairs on the unit circle (Pendulum, Acrobot)")
    init: Literal["mixed", "prior"] = param("mixed", "start states: every second restart at N(0, 1) in observation "
                                            "units, the others at the attacker's rollout statistics (mixed), "
                                            "or all at the rollout statistics (prior)")
    residual: bool = param(True, "parameterise s' and r as residuals from f(s, a) and r(s, a)")

    def validate(self, owner: str) -> None:
        super().validate(owner)
        require_positive(self, owner, "state_weight", "reward_weight", "dynamics_weight", "refine_lr",
                         allow_zero=("state_weight", "reward_weight", "dynamics_weight"))
        from gradleak.errors import ConfigError

        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"{owner}: warmup must be in [0, 1), got {self.warmup}")
        if not 0.0 <= self.match_first <= 1.0:
            raise ConfigError(f"{owner}: match_first must be in [0, 1], got {self.match_first}")
        if self.init not in ("mixed", "prior"):
            raise ConfigError(f"{owner}: init must be 'mixed' or 'prior', got {self.init!r}")


class RGIA(Attack):
    """Regularization Gradient Inversion Attack: gradient matching plus state, reward and dynamics priors.

    He, "Gradient Inversion in Federated Reinforcement Learning", arXiv 2512.00303, 2025.
    min ||U(s,a,r,s') - U_obs||^2 / ||U_obs||^2 + l_s R_s(s, s') + l_r (r - r(s,a))^2 + l_T ||s' - f(s,a)||^2.
    No official code exists and the paper's weights are not public; we chose l_s = 0.001, l_r = l_T = 10 in
    normalised units so that the priors dominate the matching residual (the regularised solutions are the
    gradient-matching ones that obey the environment, the paper's theorem). States are parameterised around
    the attacker's rollout statistics, and ``s'``, ``r`` as residuals from ``f(s, a)``, ``r(s, a)`` starting at 0
    (the same objective, better conditioned: plain penalties left the matching stuck an order of magnitude
    higher on CartPole); discrete actions are first read off the last layer (iDLG-style):
    absent actions are masked, and when one action or ``batch`` distinct actions are present they are fixed.
    Set a weight to 0 to use the other priors alone.

    Three choices the paper leaves open, fixed by the Pendulum case (whose RGIA states were once 2-20x worse than
    rl-dlg's although every transition obeyed the dynamics: a local minimum of the constrained problem, the
    matching residual stuck at 0.01-0.09 against rl-dlg's 0.0002-0.004):

    - Match-first restarts (``match_first``, ``warmup``, ``refine_lr``), an optimisation schedule. Half the
      restarts first solve the baseline's problem (plain matching, ``s'`` and ``r`` free, in observation units
      from N(0, 1), with the actions read off the last layer) for ``warmup`` of the iterations, are then
      projected onto the priors' manifold (``s' = f(s, a)``, ``r = r(s, a)``, ``done`` from ``f``) and refined
      on the full objective at a tenth of the step size. Why: a DDPG update holds the actor's gradient, which
      depends on the states alone, and the critic's, in which ``s'`` and ``r`` enter only through one TD error
      per transition. With ``s'`` and ``r`` free, that TD error is a free scalar and the states are pinned by
      the gradient's directions; with ``s' = f(s, a)``, ``r = r(s, a)`` from the start, it is a stiff function
      of the states and Adam stalls away from the basin. Matching first finds the basin; the projection then
      lets the priors sharpen the states (their constraint removes the TD error's freedom). The full step
      size after the projection throws the states out of the basin again (state MSE 0.004 against 0.001 at
      a tenth), and a projection in RGIA's own parametrisation (from the rollout statistics) did not find it
      (0.14). Pendulum, batch 4, seed 0, 400 iterations: state MSE 0.0998 -> 2e-4 (FedSGD), 0.10 -> 4e-4
      (FedAvg). The other half of the restarts optimise the full objective from the start (better on DQN
      cases and MountainCar, whose velocity scale, 0.014, makes an N(0, 1) start land far outside the state
      box); the lowest full objective picks among all restarts. ``match_first=0`` restores the previous
      behaviour.
    - Start states (``init``) of the other restarts. The rollout statistics spread Pendulum's angular velocity
      over its whole range, while a replay batch drawn early in an episode sits near the reset distribution;
      every second of these restarts starts at N(0, 1) in observation units, the baseline's start.
    - The observation manifold (``circle``). Pendulum's and Acrobot's ``(cos, sin)`` pairs are kept on the
      unit circle: the closed-form dynamics read angles through ``atan2``, so an off-circle state is not an
      observation yet satisfies every penalty. Neutral on the metrics (the simulator referee also reads
      ``atan2``), but only real observations are returned.

    ``residual=False`` (the plain penalty form) is kept as an option; it did not fix Pendulum (state MSE
    0.10-0.18).
    """

    name = "rgia"
    modalities = TRANSITION
    priors = (StatePrior, RewardPrior, DynamicsPrior)
    Config = RGIAConfig
    paper = "He, Gradient Inversion in Federated Reinforcement Learning, arXiv 2025"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        c = self.config
        dtype = next(view.model.parameters()).dtype
        info, stats = attacker_knowledge(view.model.env_id, view.device, dtype)
        mask = fixed = None
        if info.layout.discrete and c.recover_actions:
            present = recover_actions(view, update)
            ids = present.nonzero().flatten()
            if len(ids) == 1:
                fixed = ids.expand(view.batch_size).clone()
            elif len(ids) == view.batch_size:
                fixed = ids.clone()
            else:
                mask = present
        base = view.modality.search_space(view)
        space = TransitionSpace(base.layout, base.env, base.env_kwargs, base.action_high, center=stats.mean,
                                scale=stats.scale, r_center=stats.r_mean, r_scale=stats.r_scale,
                                action_mask=mask, fixed_actions=fixed,
                                anchor=(lambda s, a: _anchor(info, stats, s, a))
                                if c.residual else None,
                                angle_pairs=ANGLE_PAIRS.get(info.family, ()) if c.circle else (),
                                mixed_init=c.init == "mixed")
        priors = [(StatePrior(device=self.device), c.state_weight), (RewardPrior(device=self.device), c.reward_weight),
                  (DynamicsPrior(device=self.device), c.dynamics_weight)]
        iterations = budget or c.iterations
        first = int(c.match_first * c.restarts) if c.warmup > 0 else 0
        runs = []
        if c.restarts - first > 0:
            runs.append(match_update(view, update, space, priors, iterations, c.lr, c.restarts - first))
        if first > 0:
            # The match-first stage runs in the baseline's search space (observation units, N(0, 1) start), with
            # the actions read off the last layer.
            start = TransitionSpace(base.layout, base.env, base.env_kwargs, base.action_high, action_mask=mask,
                                    fixed_actions=fixed)
            runs.append(match_update(view, update, space, priors, iterations, c.lr, first, c.warmup, start,
                                     c.refine_lr))
        best = min(runs, key=lambda r: r.objective)
        objectives = [v for r in runs for v in r.info["restart_objectives"]]
        offset = 0 if best is runs[0] else len(runs[0].info["restart_objectives"])
        return Reconstruction(batch=best.batch, objective=best.objective,
                              info={**best.info, "restart_objectives": objectives,
                                    "best_restart": offset + best.info["best_restart"],
                                    "match_first_restarts": list(range(c.restarts - first, c.restarts))})


def _anchor(info, stats, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The attacker's ``(f(s, a), r(s, a), done(f(s, a)))``: what RGIA's residuals and projection are taken from."""
    s2, done = next_state(info, s, a)
    return s2, reward(info, s, a, stats), done


ATTACKS = [RLDLG, RGIA]
