"""Bad input exits 2 with one line on stderr that starts with "Error:" and names the problem (and the fix);
an internal failure exits 1 with one line, its traceback only under GRADLEAK_DEBUG=1. Never a traceback
otherwise.

In process through click's ``CliRunner`` (fast), and for a few cases through ``python -m gradleak.cli`` with a
throwaway plugin distribution on ``PYTHONPATH`` (a ``*.dist-info`` with an ``entry_points.txt``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import gradleak
from gradleak.cli import cli

ROOT = Path(__file__).resolve().parents[1]
REGISTRY_MODULE = sys.modules["gradleak.registry"]  # `gradleak.registry` is the function
TINY = ["--budget", "2", "--set", "restarts=1", "--device", "cpu"]
LENET = ["run", "--case", "vision/lenet", "--device", "cpu"]

#: The throwaway plugin: attacks the vision case cannot take, and one that fails inside.
PLUGIN_SOURCE = textwrap.dedent('''
    """A throwaway gradleak plugin for the bad-input tests."""
    import torch

    import gradleak


    class _Constant(gradleak.Attack):
        def reconstruct(self, update, view, budget=None):
            data = torch.full((view.batch_size, *view.sample_shape), 0.5, device=view.device)
            labels = view.labels if view.labels is not None else torch.zeros(
                view.batch_size, dtype=torch.long, device=view.device)
            return gradleak.Reconstruction(gradleak.Batch(data, labels, view.modality.name))


    class GraphOnly(_Constant):
        """An attack on graph data only."""

        name = "graph-only"
        modalities = frozenset({"graph"})


    class NeedsLabels(_Constant):
        """An attack that needs the true labels."""

        name = "needs-labels"
        modalities = frozenset({"image"})
        requires = frozenset({"labels"})


    class Boom(_Constant):
        """An attack with a bug."""

        name = "boom"

        def reconstruct(self, update, view, budget=None):
            raise RuntimeError("kaboom inside the boom attack")


    class NanUpdate(gradleak.Defense):
        """A broken defense: every value of the update it sends is NaN."""

        name = "nan-update"
        stage = "update"

        def apply_update(self, update, generator, context=None):
            return update.with_tensors({k: torch.full_like(v, float("nan")) for k, v in update.tensors.items()})


    @gradleak.hookimpl
    def register_attacks(register):
        register(GraphOnly)
        register(NeedsLabels)
        register(Boom)


    @gradleak.hookimpl
    def register_defenses(register):
        register(NanUpdate)
''')


# --------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def plugin_registry() -> gradleak.Registry:
    """The real plugins plus the throwaway one, registered in process."""
    module = types.ModuleType("gltest_bad_input_plugin")
    exec(compile(PLUGIN_SOURCE, "<gltest_bad_input_plugin>", "exec"), module.__dict__)
    reg = gradleak.Registry(extra=[("xtest", module)])
    assert reg.infos["xtest"].status == "ok", reg.infos["xtest"]
    return reg


@pytest.fixture
def with_plugin(plugin_registry, monkeypatch):
    """Make the CLI's shared registry the one holding the throwaway plugin (restored afterwards)."""
    monkeypatch.setattr(REGISTRY_MODULE, "_shared", plugin_registry)
    return plugin_registry


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder for PYTHONPATH holding the throwaway plugin as an installed distribution."""
    site = tmp_path_factory.mktemp("site")
    (site / "gltest_bad_input_plugin.py").write_text(PLUGIN_SOURCE)
    info = site / "gltest_x-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gltest-x\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gradleak]\nxtest = gltest_bad_input_plugin\n")
    return site


def gradleak_proc(args: list[str], site: Path | None = None, debug: bool = False,
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADLEAK_")}
    env["OMP_NUM_THREADS"] = "1"
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    if debug:
        env["GRADLEAK_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "gradleak.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(stderr: str, *needles: str) -> str:
    """The single stderr line, which starts with "Error:" and contains every needle."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("Error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def assert_bad_input(args: list[str], *needles: str, env: dict[str, str] | None = None) -> str:
    """Run in process: exit 2, nothing on stdout, one "Error:" line naming every needle, no traceback."""
    result = CliRunner().invoke(cli, args, env=env, prog_name="gradleak")
    assert isinstance(result.exception, SystemExit), (result.exception, result.output)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.output
    return one_error_line(result.stderr, *needles)


def assert_proc_bad_input(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    return one_error_line(proc.stderr, *needles)


def png_folder(folder: Path, count: int, corrupt: str | None = None) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    if corrupt:
        (folder / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n this is not a real PNG")
    return folder


# --------------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(("args", "needles"), [
    (["run", "--case", "vision/lenett", "--attack", "dlg", *TINY], ["vision/lenett", "Did you mean 'vision/lenet'"]),
    (["run", "--case", "vision/lenet", "--attack", "dgl", *TINY], ["'dgl'", "Did you mean 'dlg'"]),
    (["run", "--case", "vision/lenet", "--attack", "dlg", "--defense", "nonee", *TINY],
     ["defense", "'nonee'", "Did you mean 'none'?"]),
    (["show", "psnrr"], ["'psnrr'", "Did you mean 'psnr'"]),
    (["show", "inverting-gradient"], ["'inverting-gradient'", "Did you mean 'inverting-gradients'"]),
    (["list", "attacks", "--modality", "imagee"], ["modality", "'imagee'", "Did you mean 'image'?"]),
    (["list", "attack"], ["'attack'", "attacks", "gradleak list --help"]),
    (["run", "--case", "vision/lenet"], ["Missing option '--attack'", "gradleak run --help"]),
    (["run", "--case", "vision/lenet", "--attack", "dlg", "--batch-size", "two"],
     ["--batch-size", "'two' is not a valid integer"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
], ids=["case", "attack", "defense", "show", "show-attack", "modality", "list-kind", "missing-option",
        "option-type", "command"])
def test_unknown_names_are_refused_with_a_suggestion(args, needles):
    assert_bad_input(args, *needles)


def test_case_of_a_plugin_that_provides_it_not(monkeypatch):
    # graph is a first-party plugin; its case 'nothing' does not exist (whether the plugin is loaded or not).
    line = assert_bad_input(["run", "--case", "graph/nothing", "--attack", "dlg", *TINY], "graph/nothing")
    assert "case" in line
    monkeypatch.setenv("GRADLEAK_DISABLE_PLUGINS", "graph")
    monkeypatch.setattr(REGISTRY_MODULE, "_shared", None)
    line = assert_bad_input(["run", "--case", "graph/gcn-molecules", "--attack", "dlg", *TINY],
                            "plugin 'graph'", "disabled")
    assert "GRADLEAK_DISABLE_PLUGINS" in line


def test_unknown_names_for_real():
    assert_proc_bad_input(gradleak_proc(["run", "--case", "vision/lenett", "--attack", "dlg", *TINY]),
                          "Did you mean 'vision/lenet'")
    assert_proc_bad_input(gradleak_proc(["show", "psnrr"]), "Did you mean 'psnr'")
    assert_proc_bad_input(gradleak_proc(["--bogus"]), "No such option '--bogus'")


# --------------------------------------------------------------------------------------------------- data


def test_missing_data_path(tmp_path):
    missing = tmp_path / "nowhere"
    assert_bad_input([*LENET, "--attack", "dlg", "--data", str(missing), *TINY], str(missing), "no such file")


def test_unreadable_data(tmp_path):
    folder = png_folder(tmp_path / "photos", 2, corrupt="broken.png")
    assert_bad_input([*LENET, "--attack", "dlg", "--data", str(folder), *TINY], "broken.png", "cannot read image")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert_bad_input([*LENET, "--attack", "dlg", "--data", str(other), *TINY], "notes.txt", "cannot read")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_bad_input([*LENET, "--attack", "dlg", "--data", str(empty), *TINY], "no PNG/JPEG images")


def test_unreadable_data_for_real(tmp_path):
    folder = png_folder(tmp_path / "photos", 1, corrupt="broken.png")
    assert_proc_bad_input(gradleak_proc([*LENET, "--attack", "dlg", "--data", str(folder), *TINY]), "broken.png")


@pytest.mark.parametrize(("extra", "needles"), [
    (["--batch-size", "1000"], ["--batch-size 1000", "160 samples"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
    (["--batch-size", "-2"], ["--batch-size must be >= 1, got -2"]),
    (["--batches", "0"], ["--batches 0", "use 1 to 160"]),
    (["--batches", "161"], ["--batches 161", "use 1 to 160"]),
    (["--batch-size", "4", "--batches", "41"], ["--batches 41", "40 full batch(es) of 4", "use 1 to 40"]),
    (["--budget", "0"], ["--budget must be >= 1, got 0"]),
    (["--set", "budget=0"], ["--budget must be >= 1, got 0"]),
    (["--set", "budget=abc"], ["budget", "integer", "'abc'"]),
    (["--seed", "99999999999"], ["--seed", "99999999999"]),
    (["--seed", "-1"], ["--seed", "-1"]),
], ids=["batch-size-large", "batch-size-0", "batch-size-negative", "batches-0", "batches-many",
        "batches-many-of-4", "budget-0", "set-budget-0", "set-budget-type", "seed-large", "seed-negative"])
def test_sizes_out_of_range(extra, needles):
    assert_bad_input([*LENET, "--attack", "dlg", "--set", "restarts=1", *extra], *needles)


def test_data_smaller_than_the_batch(tmp_path):
    folder = png_folder(tmp_path / "photos", 3)
    assert_bad_input([*LENET, "--attack", "dlg", "--data", str(folder), "--batch-size", "4", *TINY],
                     "--batch-size 4", "3 samples", "--batch-size 3 or less")
    assert_bad_input([*LENET, "--attack", "dlg", "--data", str(folder), "--batches", "4", *TINY],
                     "--batches 4", "use 1 to 3")


def test_out_that_is_a_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    assert_bad_input([*LENET, "--attack", "dlg", "--out", str(target), *TINY], "--out", "is a file")


# --------------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(("extra", "needles"), [
    (["--set", "iteration=5"], ["'iteration'", "Did you mean 'iterations'?", "Valid keys", "restarts", "protocol"]),
    (["--set", "restarts=abc"], ["restarts", "integer", "'abc'"]),
    (["--set", "local_lr=fast"], ["local_lr", "number", "'fast'"]),
    (["--set", "protocol=fedavgg"], ["protocol", "'fedavgg'", "fedsgd, fedavg, aggregate"]),
    (["--set", "restarts"], ["--set 'restarts'", "KEY=VALUE"]),
    (["--set", "=3"], ["KEY=VALUE"]),
    (["--defense", "none:foo=1"], ["none", "'foo'", "Valid parameters"]),
    (["--defense", "none:foo"], ["'foo'", "key=value"]),
], ids=["set-unknown-key", "set-int-type", "set-float-type", "set-choice", "set-no-equals", "set-no-key",
        "defense-param", "defense-no-equals"])
def test_bad_parameters(extra, needles):
    assert_bad_input([*LENET, "--attack", "dlg", *TINY, *extra], *needles)


def test_bad_parameters_for_real():
    proc = gradleak_proc([*LENET, "--attack", "dlg", *TINY, "--set", "iteration=5"])
    assert_proc_bad_input(proc, "Did you mean 'iterations'?", "Valid keys")
    assert_proc_bad_input(gradleak_proc([*LENET, "--attack", "dlg", *TINY, "--set", "restarts=abc"]), "'abc'")


# --------------------------------------------------------------------------------------------------- devices


def test_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for device in ("cuda", "cuda:0"):
        assert_bad_input(["run", "--case", "vision/lenet", "--attack", "dlg", "--budget", "2", "--device", device],
                         f"'{device}'", "CUDA is not available", "--device cpu")


def test_unknown_device():
    assert_bad_input(["run", "--case", "vision/lenet", "--attack", "dlg", "--budget", "2", "--device", "nonsense"],
                     "'nonsense'", "auto, cpu, cuda")


def test_devices_for_real():
    proc = gradleak_proc(["run", "--case", "vision/lenet", "--attack", "dlg", "--budget", "2", "--device", "nonsense"])
    assert_proc_bad_input(proc, "unknown device 'nonsense'")


# --------------------------------------------------------------------------------------------------- NaN / inf


@pytest.mark.parametrize("sets", [
    ["protocol=fedavg", "local_lr=1e38", "local_steps=3"],  # local training overflows
    ["protocol=fedavg", "local_lr=nan"],
], ids=["overflow", "nan-lr"])
def test_update_with_nan_or_inf(sets):
    args = [*LENET, "--attack", "dlg", *TINY]
    for s in sets:
        args += ["--set", s]
    assert_bad_input(args, "NaN or inf", "local_lr")


def test_update_with_nan_from_a_defense(with_plugin):
    with pytest.raises(gradleak.DataError, match="NaN or inf"):
        gradleak.run("vision/lenet", "dlg", defenses=["nan-update"], device="cpu", budget=2, sets={"restarts": 1},
                     reg=with_plugin)
    assert_bad_input([*LENET, "--attack", "dlg", "--defense", "nan-update", *TINY], "NaN or inf")


def test_update_overflow_for_real():
    args = [*LENET, "--attack", "dlg", *TINY, "--set", "protocol=fedavg", "--set", "local_lr=1e38",
            "--set", "local_steps=3"]
    assert_proc_bad_input(gradleak_proc(args), "NaN or inf")


# --------------------------------------------------------------------------------------------------- kinds, capabilities


def test_attack_on_the_wrong_data_kind(with_plugin):
    assert_bad_input([*LENET, "--attack", "graph-only", "--budget", "2"],
                     "'graph-only'", "graph data", "'vision/lenet' holds image data", "--modality image")


def test_attack_needing_a_withheld_capability(with_plugin, tmp_path):
    assert_bad_input([*LENET, "--attack", "needs-labels", "--budget", "2"],
                     "'needs-labels'", "'labels'", "--set labels=known")
    result = CliRunner().invoke(cli, [*LENET, "--attack", "needs-labels", "--budget", "2", "--set", "labels=known",
                                      "--json"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["attack"] == "needs-labels" and doc["metrics"]["label_acc"] == 1.0  # it was given the true labels


def test_plugin_attacks_for_real(site):
    assert_proc_bad_input(gradleak_proc([*LENET, "--attack", "graph-only", "--budget", "2"], site),
                          "'graph-only'", "graph data")
    assert_proc_bad_input(gradleak_proc([*LENET, "--attack", "needs-labels", "--budget", "2"], site),
                          "'labels'", "--set labels=known")
    proc = gradleak_proc([*LENET, "--attack", "needs-labels", "--budget", "2", "--set", "labels=known", "--json"],
                         site)
    assert proc.returncode == 0, proc.stderr
    assert '"attack": "needs-labels"' in proc.stdout


# --------------------------------------------------------------------------------------------------- internal errors


def test_internal_error_is_one_line_with_exit_1(with_plugin):
    result = CliRunner().invoke(cli, [*LENET, "--attack", "boom", "--budget", "2"])
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    line = one_error_line(result.stderr, "internal error: RuntimeError: kaboom inside the boom attack",
                          "GRADLEAK_DEBUG=1")
    assert line.startswith("Error: internal error: ")


def test_internal_error_debug_shows_the_traceback_in_process(with_plugin):
    result = CliRunner().invoke(cli, [*LENET, "--attack", "boom", "--budget", "2"], env={"GRADLEAK_DEBUG": "1"})
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError) and "kaboom" in str(result.exception)


def test_internal_error_for_real(site):
    args = [*LENET, "--attack", "boom", "--budget", "2"]
    proc = gradleak_proc(args, site)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    one_error_line(proc.stderr, "internal error: RuntimeError: kaboom inside the boom attack")
    proc = gradleak_proc(args, site, debug=True)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == "RuntimeError: kaboom inside the boom attack"
