"""The spikes modality (matching, saving, conformance) and its metrics on known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradleak.testing import check_plugin
from gradleak_snn.metrics import SpikeF1, SpikePSNR, SpikeSSIM, TemporalConsistency
from gradleak_snn.modality import Spikes, spike_batch


def _train(kind: str = "rate", seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 6, 2, 8, 8, generator=gen) < 0.3).float()


def test_perfect_reconstruction_scores_the_best_values():
    s = _train()
    b = spike_batch(s, torch.arange(3), "events")
    assert SpikePSNR()(b, b).tolist() == [100.0] * 3
    assert torch.allclose(SpikeSSIM()(b, b), torch.ones(3))
    assert TemporalConsistency()(b, b).tolist() == [1.0] * 3 and SpikeF1()(b, b).tolist() == [1.0] * 3


def test_spike_f1_counts_true_and_false_spikes():
    truth = torch.zeros(1, 2, 1, 2, 2)
    truth[0, 0, 0, 0, 0] = truth[0, 1, 0, 1, 1] = 1
    recon = torch.zeros_like(truth)
    recon[0, 0, 0, 0, 0] = 0.8  # a hit (>= 0.5)
    recon[0, 1, 0, 0, 0] = 0.9  # a false spike; truth[0, 1, 0, 1, 1] is missed
    f1 = SpikeF1()(spike_batch(recon, None, "rate"), spike_batch(truth, None, "rate"))
    assert f1.tolist() == pytest.approx([2 / (2 + 2)])


def test_temporal_consistency_sees_what_the_time_mean_hides():
    """Frames shifted in time keep the decoded (rate) image but lose temporal consistency."""
    truth = _train()
    shifted = truth.roll(1, dims=1)
    t, r = spike_batch(truth, None, "rate"), spike_batch(shifted, None, "rate")
    assert SpikePSNR()(r, t).tolist() == [100.0] * 3
    assert float(TemporalConsistency()(r, t).max()) < 0.5


def test_matching_and_saving(tmp_path):
    m = Spikes()
    truth = spike_batch(_train(), torch.arange(3), "events")
    recon = m.select(truth, torch.tensor([2, 0, 1]))
    cost = m.pairwise_cost(recon, truth)
    assert cost.argmin(1).tolist() == [2, 0, 1]
    written = m.save(truth, tmp_path, "truth")
    assert np.load(written["truth"]).shape == (3, 6, 2, 8, 8)
    assert (tmp_path / "grid.png").exists() is False
    m.save_pictures(truth, recon, tmp_path)
    assert (tmp_path / "grid.png").exists()


def test_plugin_conformance():
    check_plugin("snn")
