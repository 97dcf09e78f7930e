"""The ``gradleak`` command line against the CLI contract of DESIGN.md.

Most tests drive ``gradleak.cli.cli`` in process with click's ``CliRunner`` (its stdout is no TTY); a few
run ``python -m gradleak.cli`` for real, to check exit codes, stdout purity and the progress bar on a TTY.
Every attack run is tiny (``--budget 2 --set restarts=1`` on the CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gradleak
from gradleak.cli import cli

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("vision", "graph", "rl", "snn", "text", "medical")
IMAGE_METRICS = ("psnr", "ssim", "mse", "label_acc")
TINY = ["--budget", "2", "--set", "restarts=1", "--device", "cpu"]
LENET_DLG = ["run", "--case", "vision/lenet", "--attack", "dlg", *TINY]
#: What a tqdm bar leaves in its stream (rate, bar, carriage returns).
TQDM_MARKS = re.compile(r"it/s|s/it|\d+it \[|\|[#█▏▎▍▌▋▊▉ ]*\||\r")


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
        assert result.stderr == "", result.stderr
    return result


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADLEAK_")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def gradleak_proc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradleak.cli", *args], env=subprocess_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def table(text: str) -> list[list[str]]:
    """Rows (split on 2+ spaces) of a table printed by the CLI, header and dashes dropped."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if set(ln.replace(" ", "")) == {"-"})
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines[start + 1:]]


def builtin_photos(n: int) -> np.ndarray:
    from gradleak_vision.data import photo_crops

    return photo_crops().data[:n].numpy()


def write_pngs(folder: Path, count: int, seed: int = 7) -> np.ndarray:
    """``count`` random 32x32 RGB PNGs named 0.png, 1.png, ...; returns them as (N, 3, 32, 32) in [0, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"{i}.png")
    return pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------------- help


def test_help_shows_the_examples():
    out = invoke("--help").stdout
    assert "Examples:" in out
    assert "gradleak run --case vision/lenet --attack dlg" in out
    assert "gradleak list attacks --modality image" in out
    for command in ("plugins", "list", "show", "run"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command


def test_run_help_lists_every_option_of_the_contract():
    out = invoke("run", "--help").stdout
    # gradleak run --case CASE --attack ATTACK [--defense D[:k=v,...]]... [--data PATH] [--batch-size N]
    #   [--batches K] [--seed S] [--device auto|cpu|cuda] [--budget N] [--set key=value]... [--out DIR] [--json]
    for option in ("--case", "--attack", "--defense", "--data", "--batch-size", "--batches", "--seed", "--device",
                   "--budget", "--set", "--out", "--json"):
        assert re.search(rf"^\s+{re.escape(option)}\b", out, re.M), f"{option} missing from run --help"
    assert "auto" in out and "cuda" in out
    assert "Examples:" in out


# --------------------------------------------------------------------------------------------------- plugins


def test_plugins_table_lists_builtin_and_every_first_party_plugin():
    rows = {r[0]: r for r in table(invoke("plugins").stdout)}
    assert set(rows) >= {"builtin", *FIRST_PARTY}
    assert rows["builtin"][1:4] == ["gradleak", gradleak.__version__, "ok"]
    assert rows["vision"][1:4] == ["gradleak-vision", gradleak.__version__, "ok"]
    assert "cases" in rows["vision"][4] and "metrics" in rows["vision"][4]
    for name in FIRST_PARTY:
        assert rows[name][1] == f"gradleak-{name}", rows[name]


def test_plugins_json_has_the_documented_keys():
    rows = json.loads(invoke("plugins", "--json").stdout)
    assert isinstance(rows, list)
    by_name = {}
    for row in rows:
        assert set(row) == {"name", "distribution", "version", "status", "error", "provides"}, row
        assert row["status"] in ("ok", "broken", "unavailable", "disabled", "not installed")
        assert isinstance(row["provides"], dict)
        assert all(isinstance(v, int) and v > 0 for v in row["provides"].values())
        by_name[row["name"]] = row
    assert set(by_name) >= {"builtin", *FIRST_PARTY}
    assert by_name["builtin"]["distribution"] == "gradleak" and by_name["builtin"]["error"] == ""
    assert by_name["builtin"]["provides"]["attacks"] >= 3
    vision = by_name["vision"]
    assert (vision["status"], vision["version"], vision["error"]) == ("ok", gradleak.__version__, "")
    assert vision["provides"]["cases"] >= 1 and vision["provides"]["metrics"] >= 3


# --------------------------------------------------------------------------------------------------- list / show


def test_list_attacks():
    rows = {r[0]: r for r in table(invoke("list", "attacks").stdout)}
    assert {"dlg", "idlg", "inverting-gradients"} <= set(rows)
    assert rows["dlg"][1] == "builtin" and "image" in rows["dlg"][2]
    assert rows["dlg"][3].startswith("Deep Leakage from Gradients")


def test_list_attacks_for_a_modality_keeps_only_those_that_apply():
    entries = json.loads(invoke("list", "attacks", "--modality", "image", "--json").stdout)
    names = {e["name"] for e in entries}
    assert {"dlg", "idlg", "inverting-gradients"} <= names
    assert all(e["modalities"] == "any" or "image" in e["modalities"].split(",") for e in entries)
    text = invoke("list", "attacks", "--modality", "image").stdout
    assert {r[0] for r in table(text)} == names


def test_list_cases_json():
    entries = json.loads(invoke("list", "cases", "--json").stdout)
    lenet = next(e for e in entries if e["name"] == "vision/lenet")
    assert lenet["qualified_name"] == "vision/lenet"
    assert lenet["plugin"] == "vision" and lenet["modalities"] == "image"
    assert lenet["summary"]
    assert all(set(e) == {"name", "qualified_name", "plugin", "modalities", "summary"} for e in entries)


def test_list_metrics():
    rows = {r[0]: r for r in table(invoke("list", "metrics").stdout)}
    assert set(IMAGE_METRICS) <= set(rows)
    assert rows["label_acc"][1] == "builtin" and rows["psnr"][1] == "vision"


def test_show_attack_gives_paper_and_every_parameter_with_its_default():
    out = invoke("show", "dlg").stdout
    assert out.startswith("builtin/dlg  (attack, plugin 'builtin')")
    assert re.search(r"^  paper: Zhu et al\., Deep Leakage from Gradients", out, re.M)
    assert re.search(r"^  data: .*image", out, re.M)
    assert "parameters (--set key=value):" in out
    config = gradleak.registry().get("attack", "dlg").Config
    for f in dataclasses.fields(config):
        assert re.search(rf"^    {f.name} \(\w+, default {re.escape(repr(f.default))}\)", out, re.M), f.name


def test_show_case_gives_protocol_and_threat_model_parameters():
    out = invoke("show", "vision/lenet").stdout
    assert out.startswith("vision/lenet  (case, plugin 'vision')")
    assert "data: image" in out
    config = gradleak.registry().get("case", "vision/lenet").Config
    names = [f.name for f in dataclasses.fields(config)]
    assert {"protocol", "mode", "labels", "bn_stats", "local_steps", "local_lr", "pretrain_steps"} <= set(names)
    for f in dataclasses.fields(config):
        assert re.search(rf"^    {f.name} \(.+, default {re.escape(repr(f.default))}\)", out, re.M), f.name
    assert "protocol (fedsgd|fedavg|aggregate, default 'fedsgd')" in out  # a Literal lists its choices
    assert "labels (known|unknown, default 'unknown')" in out
    assert invoke("show", "lenet").stdout == out  # the bare name resolves too


# --------------------------------------------------------------------------------------------------- run


def test_run_json_prints_one_object_with_the_contract_keys(tmp_path):
    out_dir = tmp_path / "out"
    result = invoke(*LENET_DLG, "--json", "--out", str(out_dir))
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(doc, dict)
    assert {"case", "attack", "defenses", "seed", "device", "seconds", "metrics", "per_sample", "artifacts"} <= set(doc)
    assert (doc["case"], doc["attack"], doc["defenses"], doc["seed"], doc["device"]) == (
        "vision/lenet", "dlg", ["none"], 0, "cpu")
    assert isinstance(doc["seconds"], float) and 0 < doc["seconds"] < 60
    metrics = doc["metrics"]
    assert set(metrics) == set(IMAGE_METRICS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["mse"] <= 1 and metrics["label_acc"] in (0.0, 1.0)
    assert metrics["psnr"] == pytest.approx(10 * math.log10(1 / metrics["mse"]), rel=1e-4)  # one sample
    [row] = doc["per_sample"]
    assert (row["batch"], row["index"]) == (0, 0)
    assert all(row[m] == metrics[m] for m in IMAGE_METRICS)
    artifacts = doc["artifacts"]
    assert set(artifacts) == {"truth", "recon", "grid"}
    assert artifacts == {k: str(out_dir / f"{k}.{'png' if k == 'grid' else 'npy'}") for k in artifacts}
    truth, recon = np.load(artifacts["truth"]), np.load(artifacts["recon"])
    for arr in (truth, recon):
        assert arr.shape == (1, 3, 32, 32) and arr.dtype == np.float32
        assert arr.min() >= 0.0 and arr.max() <= 1.0
    np.testing.assert_array_equal(truth, builtin_photos(1))  # the truth is the case's first built-in sample
    assert float(((recon - truth) ** 2).mean()) == pytest.approx(metrics["mse"], rel=1e-4)
    with Image.open(artifacts["grid"]) as grid:
        assert grid.format == "PNG" and grid.mode == "RGB"
        assert grid.width >= 32 and grid.height >= 64  # truth above, reconstruction below


def test_run_without_json_prints_a_metrics_table_and_the_artifact_paths(tmp_path):
    out_dir = tmp_path / "out"
    text = invoke(*LENET_DLG, "--out", str(out_dir)).stdout
    assert text.splitlines()[0].startswith("vision/lenet / dlg / none  seed 0  cpu")
    lines = text.splitlines()
    header = lines.index(next(ln for ln in lines if ln.split() == ["metric", "mean"]))
    rows = {}
    for ln in lines[header + 2:]:
        parts = ln.split()
        if len(parts) != 2 or parts[0] not in IMAGE_METRICS:
            break
        rows[parts[0]] = float(parts[1])
    assert set(rows) == set(IMAGE_METRICS)
    for name in ("truth", "recon", "grid"):
        [path] = [ln.split(": ", 1)[1] for ln in lines if ln.startswith(f"{name}: ")]
        assert Path(path).is_file() and Path(path).parent == out_dir
    assert not TQDM_MARKS.search(text)


def test_two_batches_of_two_give_four_rows_and_one_truth_file(tmp_path):
    doc = json.loads(invoke(*LENET_DLG, "--batches", "2", "--batch-size", "2", "--json", "--out",
                            str(tmp_path)).stdout)
    assert [(r["batch"], r["index"]) for r in doc["per_sample"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for m in IMAGE_METRICS:
        assert doc["metrics"][m] == pytest.approx(sum(r[m] for r in doc["per_sample"]) / 4, rel=1e-6)
    truth, recon = np.load(doc["artifacts"]["truth"]), np.load(doc["artifacts"]["recon"])
    assert truth.shape == recon.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(truth, builtin_photos(4))  # consecutive batches, in order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "recon.npy", "truth.npy"]


def test_data_folder_runs_every_batch_by_default(tmp_path):
    images = write_pngs(tmp_path / "photos", 3)
    doc = json.loads(invoke(*LENET_DLG, "--data", str(tmp_path / "photos"), "--json", "--out",
                            str(tmp_path / "out")).stdout)
    assert [(r["batch"], r["index"]) for r in doc["per_sample"]] == [(0, 0), (1, 0), (2, 0)]
    truth = np.load(doc["artifacts"]["truth"])
    assert truth.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(truth, images, atol=1e-6)  # the user's own images, sorted by file name


def test_seed_makes_runs_repeatable_and_changes_them(tmp_path):
    def per_sample(seed: int) -> list[dict]:
        doc = json.loads(invoke(*LENET_DLG, "--seed", str(seed), "--json").stdout)
        assert doc["seed"] == seed
        return doc["per_sample"]

    first, again, other = per_sample(3), per_sample(3), per_sample(4)
    assert first == again
    assert [r["mse"] for r in first] != [r["mse"] for r in other]


def test_no_progress_bar_when_stdout_is_not_a_tty():
    for extra in ([], ["--json"]):
        result = invoke(*LENET_DLG, *extra)
        assert not TQDM_MARKS.search(result.stdout), result.stdout
        assert result.stderr == ""


# --------------------------------------------------------------------------------------------------- for real


def test_subprocess_run_json_stdout_is_pure_json(tmp_path):
    proc = gradleak_proc(*LENET_DLG, "--json", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["case"] == "vision/lenet" and len(doc["per_sample"]) == 1
    assert all(Path(p).is_file() for p in doc["artifacts"].values())
    assert "Traceback" not in proc.stderr and not TQDM_MARKS.search(proc.stderr)


def test_subprocess_plugins_json_and_broken_pipe():
    proc = gradleak_proc("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["name"] for r in json.loads(proc.stdout)} >= {"builtin", *FIRST_PARTY}
    # A reader that goes away early (`gradleak show vision/lenet | head -1`) is no internal error.
    p = subprocess.Popen([sys.executable, "-m", "gradleak.cli", "show", "vision/lenet"], env=subprocess_env(),
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait(timeout=60) == 141
    assert err == ""


def run_on_a_tty(args: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI with stdout on a pseudo-terminal (stderr a pipe); returns (rc, stdout, stderr)."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "gradleak.cli", *args], env=subprocess_env(), cwd=ROOT,
                         stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    os.close(master)
    err = p.stderr.read().decode()
    p.stderr.close()
    rc = p.wait(timeout=10)
    return rc, b"".join(chunks).decode().replace("\r\n", "\n"), err


def test_progress_bar_only_on_a_tty_and_never_under_json():
    rc, out, err = run_on_a_tty([*LENET_DLG, "--json"])
    assert rc == 0, err
    assert json.loads(out)["attack"] == "dlg"
    assert err == ""  # --json: no bar even on a terminal
    rc, out, err = run_on_a_tty(LENET_DLG)
    assert rc == 0, err
    assert "batch 0" in err and TQDM_MARKS.search(err)  # the bar shows on a terminal (tqdm writes to stderr)
    assert "metric" in out and "psnr" in out
