"""gradleak tune: Optuna over an attack's parameters, on the attacker's public data only."""

from __future__ import annotations

import sqlite3

import pytest

from gradleak.errors import ConfigError
from gradleak.study import Study
from gradleak.tune import search_space, tune

pytest.importorskip("optuna")


def test_tuning_never_touches_the_private_data_and_writes_a_runnable_preset(tmp_path, monkeypatch):
    from gradleak_vision.cases import LeNetCase

    def private(self, path):
        raise AssertionError("tuning read the private data")

    monkeypatch.setattr(LeNetCase, "load_data", private)
    result = tune("vision/lenet", "idlg", trials=3, out=tmp_path, sets={"restarts": 1}, params={"lr": "0.5:2"},
                  budget=2, device="cpu")
    assert result.metric == "psnr" and result.higher_is_better and result.trials == 3
    assert set(result.best_params) >= {"lr"} and 0.5 <= result.best_params["lr"] <= 2
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        values = [v for (v,) in conn.execute("SELECT value FROM trial_values")]
    assert len(values) == 3 and result.best_value == pytest.approx(max(values))
    preset = Study.from_toml(result.preset)
    [run] = preset.runs
    assert run.attack == "idlg" and dict(run.sets)["lr"] == pytest.approx(result.best_params["lr"])
    assert dict(run.sets)["restarts"] == 1 and run.budget == 2
    again = tune("vision/lenet", "idlg", trials=3, out=tmp_path, sets={"restarts": 1}, params={"lr": "0.5:2"},
                 budget=2, device="cpu")
    assert again.trials == 3  # resumed: the three stored trials count


def test_search_space_from_the_config_and_explicit_ranges():
    from gradleak.builtin.attacks import InvertingGradients

    space = search_space(InvertingGradients.Config)
    assert space["lr"] == ("float", (0.01, 1.0, True))
    assert space["schedule"] == ("choice", ["none", "step", "cosine"])
    assert "iterations" not in space and "restarts" not in space
    assert search_space(InvertingGradients.Config, {"restarts": "1:4"})["restarts"] == ("int", (1, 4))
    with pytest.raises(ConfigError, match="no such parameter"):
        search_space(InvertingGradients.Config, {"nope": "1:2"})
    with pytest.raises(ConfigError, match="LOW must be below HIGH"):
        search_space(InvertingGradients.Config, {"lr": "2:1"})
