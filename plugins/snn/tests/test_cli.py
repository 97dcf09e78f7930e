"""Bad spiking parameters exit 2 with one line naming the valid values."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gradleak.cli import cli


@pytest.mark.parametrize(("setting", "expected"), [
    ("T=0", "T must be >= 1"),
    ("surrogate=sigmoid", "fast-sigmoid, atan, straight-through"),
    ("encoding=phase", "direct, rate, latency"),
])
def test_bad_spiking_parameters_exit_2_listing_valid_values(setting, expected):
    result = CliRunner().invoke(cli, ["run", "--case", "snn/lif-mlp-digits", "--attack", "dlg", "--set", setting,
                                      "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_snn_attacks_are_listed_for_the_spikes_modality():
    result = CliRunner().invoke(cli, ["list", "attacks", "--modality", "spikes"])
    assert result.exit_code == 0
    for name in ("dlg", "idlg", "inverting-gradients", "spike-dlg"):
        assert name in result.output
