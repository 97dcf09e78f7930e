"""The generic attacks and spike-dlg on spiking cases and their ANN twins, with their headline outcomes.

Tiny settings (T of 1 or 2, a few hundred iterations, one digit) keep these in the default suite; the
SNN-vs-ANN study at scale is ``benchmarks/snn/snn_vs_ann.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradleak


def run(case: str, attack: str, budget: int, seed: int = 0, batches: int = 1, **sets):
    return gradleak.run(case, attack, device="cpu", budget=budget, seed=seed, batches=batches, sets=sets)


def test_idlg_recovers_a_digit_exactly_from_the_ann_twin():
    """iDLG reads the label off the last layer and L-BFGS then matches the twin's gradient to the pixel."""
    result = run("snn/ann-twin-mlp-digits", "idlg", 10, T=1, restarts=4)
    assert result.metrics["label_acc"] == 1.0
    assert result.metrics["psnr"] >= 40.0, result.per_sample


def test_dlg_recovers_labels_jointly_through_the_surrogate_gradient():
    """DLG optimises a soft label with the data; through the spiking network's surrogate gradient its label is the
    true digit class for every digit (chance: 1 in 100 for two digits), while the data itself does not come back."""
    result = run("snn/lif-mlp-digits", "dlg", 5, batches=2, T=1, restarts=1)
    assert result.metrics["label_acc"] == 1.0
    assert result.metrics["psnr"] < 15.0


def test_inverting_gradients_leaks_less_from_the_snn_than_from_its_twin():
    """The paper's finding on one tiny setting: same digit, weights, attack and budget; the ANN twin's digit comes
    back (>= 25 dB) while the SNN's stays at least 5 dB worse."""
    ann = run("snn/ann-twin-mlp-digits", "inverting-gradients", 200, T=2)
    snn = run("snn/lif-mlp-digits", "inverting-gradients", 200, T=2)
    assert ann.metrics["psnr"] >= 25.0, ann.per_sample
    assert snn.metrics["psnr"] <= ann.metrics["psnr"] - 5.0, (snn.per_sample, ann.per_sample)
    assert snn.metrics["label_acc"] == 1.0


def test_spike_dlg_recovers_a_rate_coded_spike_train(tmp_path):
    """spike-dlg optimises the 0/1 spike tensor itself; against the ANN twin of a rate-coded digit it recovers the
    firing rates (decoded PSNR >= 30 dB) and most individual spikes, and saves (N, T, C, H, W) trains."""
    result = gradleak.run("snn/ann-twin-mlp-digits", "spike-dlg", device="cpu", budget=200,
                          sets={"T": 2, "encoding": "rate"}, out=tmp_path)
    assert result.metrics["psnr"] >= 30.0, result.per_sample
    assert result.metrics["spike_f1"] >= 0.8
    recon = np.load(result.artifacts["recon"])
    assert recon.shape == (1, 2, 1, 28, 28) and set(np.unique(recon)) <= {0.0, 1.0}


@pytest.mark.slow
def test_inverting_gradients_on_synthetic_events_runs_on_the_spiking_cnn():
    """The relaxed spike tensor of event frames: the SNN's reconstruction stays poor (the paper's finding)."""
    result = run("snn/lif-cnn-events", "inverting-gradients", 300, T=3)
    assert result.metrics["label_acc"] == 1.0
    assert result.metrics["psnr"] < 15.0


@pytest.fixture(scope="module")
def photos_npy(tmp_path_factory) -> str:
    from gradleak_vision.data import photo_crops

    path = tmp_path_factory.mktemp("photos") / "photos.npy"
    np.save(path, photo_crops().data[:2].numpy())
    return str(path)


def test_direct_currents_of_photo_crops_leak_from_the_ann_twin(photos_npy):
    """Direct encoding of real photo crops (via --data, fitted to 1x28x28 gray): Inverting Gradients on the
    continuous currents gives the photo back from the twin."""
    result = gradleak.run("snn/ann-twin-mlp-digits", "inverting-gradients", data=photos_npy, batches=1,
                          device="cpu", budget=150, sets={"T": 3, "encoding": "direct"})
    assert result.metrics["psnr"] >= 24.0, result.per_sample


def test_expected_rate_relaxation_recovers_rate_coded_digits_from_the_twin():
    """Rate encoding: the attacker optimises expected rates; the decoded firing rates of the client's Bernoulli
    spikes come back from the twin (>= 20 dB at T = 3)."""
    result = run("snn/ann-twin-mlp-digits", "inverting-gradients", 150, T=3, encoding="rate")
    assert result.metrics["psnr"] >= 20.0, result.per_sample


def test_latency_relaxation_reproduces_the_client_gradient_at_the_quantised_digit():
    """Latency encoding: the relaxed candidate at the digit quantised to spike times yields (nearly) the client's
    gradient, so the optimum the attack searches for exists; a random candidate is far from it."""
    import torch

    from gradleak.device import generator
    from gradleak.engine.functional import CandidateUpdate
    from gradleak.engine.objectives import objective
    from gradleak.fl.client import client_update
    from gradleak.runner import _sample_shape, plan
    from gradleak.view import AttackerView

    T = 3
    p = plan("snn/ann-twin-mlp-digits", "inverting-gradients", sets={"T": T, "encoding": "latency"}, device="cpu")
    truth = p.modality.select(p.case.load_data(None), torch.arange(1))
    gen = generator(torch.device("cpu"), 0)
    model = p.case.build_model(gen).eval()
    _, _, sent = client_update(model, p.case, p.modality, truth, p.defenses, gen)
    view = AttackerView(model=model, loss=p.case.loss, forward=p.case.forward, modality=p.modality,
                        threat=p.case.threat_model, sample_shape=_sample_shape(truth), num_classes=10, batch_size=1,
                        generator=gen)
    fn, space, distance = CandidateUpdate(view, sent), p.modality.search_space(view), objective("cosine")
    x = truth.data.images()
    t = torch.round((1 - x) * (T - 1))
    quantised = torch.where(truth.data.spikes.sum(1) > 0, (1 - t / (T - 1)).clamp_min(0.01), torch.zeros_like(x))

    def gap(candidate):
        return float(distance(fn(space.decode(candidate.unsqueeze(0)), truth.labels, per_restart_labels=False),
                              fn.target(sent)))

    assert gap(quantised) < 1e-3 < 0.1 < gap(torch.rand_like(x))
