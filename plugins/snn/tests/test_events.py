"""Event streams: binning as tonic does, the real N-MNIST binary format, synthetic streams, bad event files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gradleak
from gradleak.cli import cli
from gradleak_snn.data import mnist_digits
from gradleak_snn.events import (EVENT_DTYPE, NMNIST_SENSOR, load_event_files, read_nmnist,
                                 synthetic_saccade_events, to_frames)


def write_nmnist(path: Path, events: np.ndarray, overflow_every: int | None = None) -> Path:
    """Write ``events`` in N-MNIST's binary format (Orchard et al. 2015): 5 bytes an event, x, y, then polarity
    in bit 7 and a 23-bit timestamp; timestamps past 2^13 * k use overflow markers (y = 240) as the dataset's
    readers expect."""
    out = bytearray()
    for e in events:
        out += bytes([int(e["x"]), int(e["y"]), (int(e["p"]) << 7) | ((int(e["t"]) >> 16) & 0x7F),
                      (int(e["t"]) >> 8) & 0xFF, int(e["t"]) & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    return synthetic_saccade_events(mnist_digits()[0][3, 0].numpy(), seed=1)


def test_synthetic_saccades_fire_on_the_digit_edges(stream):
    assert 500 < len(stream) < 50_000
    assert set(np.unique(stream["p"])) == {0, 1} and bool(np.all(np.diff(stream["t"]) >= 0))
    assert stream["t"].max() < 300_000
    frames = to_frames(stream, 10)
    digit = np.zeros((34, 34))
    digit[3:31, 3:31] = mnist_digits()[0][3, 0].numpy()
    active = frames.sum((0, 1)) > 0
    # Events come from where the moving digit is, not from the empty border of the sensor.
    assert digit[active].mean() > 4 * digit.mean() or (digit[active] > 0).mean() > 0.5


def test_binning_matches_tonic_to_frame(stream):
    tonic = pytest.importorskip("tonic")
    theirs = tonic.transforms.ToFrame(sensor_size=NMNIST_SENSOR, n_time_bins=7)(stream.copy())
    assert np.array_equal(to_frames(stream, 7), np.clip(theirs, 0, 1).astype(np.float32))


def test_nmnist_file_round_trips_through_the_loader(tmp_path, stream):
    pytest.importorskip("tonic")
    part = stream[stream["t"] < 8000]  # below N-MNIST's first timestamp overflow
    write_nmnist(tmp_path / "Train" / "7" / "00001.bin", part)
    write_nmnist(tmp_path / "Train" / "2" / "00002.bin", part[:50])
    streams, labels = load_event_files(tmp_path, 10)
    assert labels.tolist() == [2, 7]
    for field in EVENT_DTYPE.names:
        assert np.array_equal(streams[1][field], part[field])


def test_event_file_with_a_missing_field_names_file_and_field(tmp_path):
    bad = np.zeros(4, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8")])
    np.save(tmp_path / "rec.npy", bad)
    with pytest.raises(gradleak.DataError, match=r"rec\.npy: events lack the field 'p'"):
        load_event_files(tmp_path / "rec.npy", 10)


def test_out_of_sensor_event_exits_2_naming_file_and_field(tmp_path):
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["x"] = [1, 40, 2]
    events["t"] = [1, 2, 3]
    path = write_nmnist(tmp_path / "far.bin", events)
    if sys.modules.get("tonic") is None:
        pytest.importorskip("tonic")
    with pytest.raises(gradleak.DataError, match=r"far\.bin: field 'x' holds 40"):
        read_nmnist(path)
    result = CliRunner().invoke(cli, ["run", "--case", "snn/lif-cnn-events", "--attack", "dlg", "--data", str(path),
                                      "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "far.bin" in result.stderr and "'x'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
