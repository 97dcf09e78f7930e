"""The transition modality: packing, selection, matching costs, saved files and the picture."""

from __future__ import annotations

import numpy as np
import torch

from gradleak import Batch
from gradleak_rl.envs import env_info, rollout
from gradleak_rl.modality import Transition, TransitionSpace
from gradleak_rl.transitions import Layout, Transitions


def _batch(env="CartPole-v1", n=6, seed=0) -> Batch:
    return Batch(rollout(env_info(env), n, seed), None, "transition")


def test_pack_and_unpack_round_trip():
    t = _batch().data
    again = Transitions.unpack(t.packed(), t.layout, t.env)
    for k in ("s", "a", "r", "s2", "done"):
        assert torch.equal(getattr(again, k), getattr(t, k))
    assert t.packed().shape == (6, Layout(4, 2, True).size) == (6, 12)


def test_select_concat_and_cost():
    m = Transition()
    b = _batch()
    idx = torch.tensor([3, 0, 5])
    sel = m.select(b, idx)
    assert torch.equal(sel.data.s, b.data.s[idx]) and len(sel) == 3
    both = m.concat([sel, m.select(b, torch.tensor([1]))])
    assert len(both) == 4 and torch.equal(both.data.r[-1:], b.data.r[1:2])
    cost = m.pairwise_cost(sel, b)
    assert cost.shape == (3, 6)
    assert torch.equal(cost.argmin(1), idx)


def test_save_writes_the_design_arrays(tmp_path):
    m = Transition()
    b = _batch()
    paths = m.save(b, tmp_path, "truth")
    with np.load(paths["truth"]) as f:
        assert set(f.files) >= {"s", "a", "r", "s2"}
        assert f["s"].shape == (6, 4) and f["a"].dtype == np.int64 and f["a"].shape == (6,)
        assert np.allclose(f["s2"], b.data.s2.numpy())
    cont = Batch(rollout(env_info("Pendulum-v1"), 3, 0), None, "transition")
    with np.load(m.save(cont, tmp_path, "recon")["recon"]) as f:
        assert f["a"].shape == (3, 1) and f["a"].dtype == np.float64


def test_picture_is_written(tmp_path):
    m = Transition()
    b = _batch()
    out = m.save_pictures(b, b, tmp_path)
    from PIL import Image

    assert Image.open(out["trajectories"]).size[0] > 300


def test_search_space_decodes_valid_actions_and_fixed_ones():
    L = Layout(4, 2, True)
    gen = torch.Generator().manual_seed(0)
    space = TransitionSpace(L, "CartPole-v1")
    x = space.decode(space.init(2, 3, gen))
    assert torch.allclose(x[..., L.a].sum(-1), torch.ones(2, 3))
    fixed = TransitionSpace(L, "CartPole-v1", fixed_actions=torch.tensor([1, 0, 1]))
    a = fixed.decode(fixed.init(2, 3, gen))[..., L.a]
    assert torch.equal(a[0].argmax(-1), torch.tensor([1, 0, 1]))
    masked = TransitionSpace(Layout(4, 3, True), "x", action_mask=torch.tensor([True, False, True]))
    assert float(masked.decode(masked.init(1, 4, gen))[..., 5].abs().max()) == 0.0


def test_search_space_keeps_angle_pairs_on_the_circle_and_mixes_starts():
    """RGIA's space: (cos, sin) observation pairs decode onto the unit circle; with ``mixed_init`` every second
    restart starts its states at N(0, 1) in observation units, the others at the rollout statistics."""
    layout = Layout(3, 1, False)
    center, scale = torch.tensor([0.0, 0.0, 5.0]), torch.tensor([1.0, 1.0, 10.0])
    space = TransitionSpace(layout, "Pendulum-v1", center=center, scale=scale, angle_pairs=((0, 1),),
                            mixed_init=True)
    z = space.init(400, 8, torch.Generator().manual_seed(0))
    s = space.decode(z)[..., layout.s]
    assert torch.allclose(s[..., :2].norm(dim=-1), torch.ones(()), atol=1e-6)
    thd = s[..., 2]
    assert abs(float(thd[1::2].mean())) < 0.1 and abs(float(thd[1::2].std()) - 1) < 0.1  # N(0, 1)
    assert abs(float(thd[0::2].mean()) - 5) < 1 and abs(float(thd[0::2].std()) - 10) < 1  # rollout statistics
    plain = TransitionSpace(layout, "Pendulum-v1", center=center, scale=scale)
    assert not torch.allclose(plain.decode(z)[..., :2].norm(dim=-1), torch.ones(()), atol=1e-3)


def test_encode_carries_a_candidate_between_spaces_and_project_puts_it_on_the_dynamics():
    """RGIA's match-first restarts: a candidate of the baseline's space is carried into RGIA's residual space
    unchanged (``encode`` inverts ``decode``), then ``project`` sets ``s' = f(s, a)``, ``r = r(s, a)`` and
    ``done`` to the anchor's termination flag."""
    from gradleak_rl.dynamics import step

    layout = Layout(3, 1, False)
    center, scale = torch.tensor([-0.4, 0.0, 0.05], dtype=torch.float64), torch.tensor([0.6, 0.7, 3.4],
                                                                                       dtype=torch.float64)
    anchor = lambda s, a: (step("pendulum", s, a)[0], step("pendulum", s, a)[1],  # noqa: E731
                           torch.ones_like(s[..., 0]))
    rgia = TransitionSpace(layout, "Pendulum-v1", action_high=2.0, center=center, scale=scale, anchor=anchor,
                           angle_pairs=((0, 1),))
    base = TransitionSpace(layout, "Pendulum-v1", action_high=2.0)
    x = base.decode(base.init(3, 4, torch.Generator().manual_seed(0)).double())
    th = torch.atan2(x[..., 1], x[..., 0])
    x[..., 0], x[..., 1] = torch.cos(th), torch.sin(th)  # a real observation, on the circle
    z = rgia.encode(x)
    assert torch.allclose(rgia.decode(z), x, atol=1e-5)
    rgia.project(z)
    y = rgia.decode(z)
    s, a, r, s2, done = layout.split(y)
    f, rf, _ = step("pendulum", s, a)
    assert torch.allclose(s, x[..., layout.s]) and torch.allclose(s2, f) and torch.allclose(r, rf)
    assert bool((done > 0.99).all())
