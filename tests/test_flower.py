"""A real Flower federation (simulation engine, 2 clients, 2 rounds) attacked by a curious server."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from gradleak.integrations.flower import simulate

    out = tmp_path_factory.mktemp("flower") / "fed"
    frame = simulate("vision/lenet", ["idlg"], out, clients=2, rounds=2, budget=200, sets={"local_lr": 0.1},
                     attack_sets={"idlg": {"restarts": 2}}, defenses={1: ["prune:ratio=0.99"]})
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
