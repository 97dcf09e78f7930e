"""A real Flower federation (simulation engine, 2 clients, 2 rounds) attacked by a curious server."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

# Its two federation fixtures take minutes: collected first, so a worker starts on them (conftest.py).
pytestmark = pytest.mark.heavy(5)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from gradleak.integrations.flower import simulate

    out = tmp_path_factory.mktemp("flower") / "fed"
    # 100 L-BFGS steps from one start: the undefended updates measured 20.1 and 35.2 dB (mean 27.6), the pruned
    # ones 5-6 dB, in 3.6 min with the federation (200 steps from 2 starts took 5.4).
    frame = simulate("vision/lenet", ["idlg"], out, clients=2, rounds=2, budget=100, sets={"local_lr": 0.1},
                     attack_sets={"idlg": {"restarts": 1}}, defenses={1: ["prune:ratio=0.99"]})
    return out, frame


def test_every_client_update_of_every_round_is_attacked_and_stored(federation):
    _, frame = federation
    assert sorted(frame["key"]) == ["flower-r1-c0-idlg", "flower-r1-c1-idlg", "flower-r2-c0-idlg", "flower-r2-c1-idlg"]
    assert set(frame["status"]) == {"ok"}


def test_undefended_updates_leak_and_the_defended_client_leaks_less(federation):
    _, frame = federation
    open_ = frame[frame["defense"] == "none"]["psnr"]
    pruned = frame[frame["defense"] == "prune:ratio=0.99"]["psnr"]
    assert open_.mean() >= 20, frame[["key", "psnr"]]
    assert pruned.mean() <= open_.mean() - 10, frame[["key", "defense", "psnr"]]


def test_the_federation_appears_in_the_report(federation):
    from gradleak.report import build_report

    out, _ = federation
    page = build_report(out)
    assert "prune:ratio=0.99" in page and page.count("data:image/png;base64,") >= 2


@pytest.fixture(scope="module")
def malicious_federation(tmp_path_factory):
    """3 clients on vision/mlp: 0 and 2 receive trap weights, 2 runs a detector and refuses flagged rounds."""
    from gradleak.integrations.flower import simulate

    out = tmp_path_factory.mktemp("flower") / "malicious"
    frame = simulate("vision/mlp", ["trap-weights", "analytic-fc"], out, clients=3, rounds=2, batch_size=2,
                     sets={"local_lr": 0.1}, malicious={0: "trap-weights", 2: "trap-weights"},
                     detectors=["suspicion"], refuse_flagged={2}, background=True)
    return frame.assign(client=frame["key"].str.extract(r"-c(\d+)-")[0].astype(int))


def test_a_malicious_server_recovers_the_trapped_clients_batches(malicious_federation):
    frame = malicious_federation
    trapped = frame[(frame["client"] == 0) & (frame["attack"] == "trap-weights")]
    assert len(trapped) == 2 and set(trapped["status"]) == {"ok"}, trapped
    assert trapped["psnr"].min() >= 40, trapped[["key", "psnr"]]
    # The active attack runs only where its model was sent: never on the honest client's updates.
    assert frame[(frame["client"] == 1) & (frame["attack"] == "trap-weights")].empty


def test_client_detectors_flag_every_trapped_round_and_no_honest_one(malicious_federation):
    frame = malicious_federation
    score = frame.groupby(["client"])["detector.suspicion"]
    assert score.min()[0] > 1 and score.min()[2] > 1, frame[["key", "detector.suspicion"]]
    # Honest rounds stay under the threshold, the second one included: trapped updates never reach the aggregate.
    assert score.max()[1] < 1, frame[["key", "detector.suspicion"]]


def test_a_client_refusing_flagged_rounds_leaks_nothing(malicious_federation):
    refused = malicious_federation[malicious_federation["client"] == 2]
    assert len(refused) == 4 and set(refused["status"]) == {"skipped"}, refused[["key", "status"]]
    assert refused["error"].str.contains("refused the round").all()


class _PlainClient:
    """A user's own Flower client (not gradleak's): one SGD step of its own model on its own batch."""

    def __init__(self, model, x, y):
        self.model, self.x, self.y = model, x, y

    def get_parameters(self, config):
        from gradleak.integrations.flower import model_to_ndarrays

        return model_to_ndarrays(self.model)

    def fit(self, parameters, config):
        import torch

        from gradleak.integrations.flower import model_to_ndarrays, ndarrays_to_model

        ndarrays_to_model(self.model, parameters)
        loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        grads = torch.autograd.grad(loss, list(self.model.parameters()))
        with torch.no_grad():
            for p, g in zip(self.model.parameters(), grads):
                p -= 0.1 * g
        return model_to_ndarrays(self.model), len(self.x), {"loss": loss.item()}


def _own_client(seed=0):
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    return model, _PlainClient(model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))


def test_a_wrapped_client_sends_its_own_update_through_a_gradleak_defense():
    import copy

    import numpy as np

    from gradleak.integrations.flower import DefendedClient, model_to_ndarrays

    model, plain = _own_client()
    start = model_to_ndarrays(model)
    clean, n, _ = plain.fit(start, {})
    model, plain = _own_client()
    wrapped = DefendedClient(plain, copy.deepcopy(model), defenses=["prune:ratio=0.9"])
    sent, n2, metrics = wrapped.fit(start, {})
    assert n2 == n and metrics["loss"] > 0
    for after_clean, after_sent, before in zip(clean, sent, start):  # prune works per tensor (DLG, Sec. 5)
        delta_clean, delta_sent = (after_clean - before).ravel(), (after_sent - before).ravel()
        kept = delta_sent != 0
        assert 0 < kept.sum() <= len(kept) - int(0.9 * len(kept))  # 90% of each tensor's entries zeroed
        assert np.allclose(delta_sent[kept], delta_clean[kept], atol=1e-6)  # the largest go through unchanged
        assert np.abs(delta_clean[kept]).min() >= np.abs(delta_clean[~kept]).max() - 1e-6


def test_a_wrapped_client_refuses_a_trapped_model_and_rejects_training_stage_defenses():
    import copy

    import torch

    from gradleak import UsageError
    from gradleak.integrations.flower import DefendedClient, model_to_ndarrays

    model, plain = _own_client()
    wrapped = DefendedClient(plain, copy.deepcopy(model), detectors=["trap-asymmetry"], refuse_flagged=True)
    honest = model_to_ndarrays(model)
    sent, _, metrics = wrapped.fit(honest, {})
    assert not metrics["gradleak_flagged"] and any((a != b).any() for a, b in zip(sent, honest))
    imprint = pytest.importorskip("gradleak_vision.imprint")
    with torch.no_grad():  # what a trap-weights server sends (Boenisch et al.)
        model[1].weight.copy_(imprint.trap_weights(64, 3 * 32 * 32, 0.5, 0.95, torch.Generator().manual_seed(0)))
    trapped = model_to_ndarrays(model)
    sent, _, metrics = wrapped.fit(trapped, {})
    assert metrics["gradleak_flagged"] and all((a == b).all() for a, b in zip(sent, trapped))
    with pytest.raises(UsageError, match="stage"):
        DefendedClient(plain, model, defenses=["dp-sgd"])
