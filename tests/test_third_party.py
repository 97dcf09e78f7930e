"""A third-party plugin installed for real (pip, hatchling, an entry point) works like a first-party one:
``gradleak plugins`` lists it, its conformance test passes, and ``gradleak run`` uses its attack."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "third_party_plugin"


def run(args: list[str], site: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADLEAK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("third_party") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "gradleak_example" / "plugin.py").is_file()
    return target


def test_installed_example_passes_its_own_conformance_test(site):
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")], site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_cli_lists_the_plugin(site):
    proc = run(["-m", "gradleak.cli", "plugins", "--json"], site)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    example = rows["example"]
    assert example["status"] == "ok", example
    assert example["distribution"] == "gradleak-example-zero" and example["version"] == "0.1.0"
    assert example["error"] == ""
    assert example["provides"] == {"attacks": 1}


def test_cli_runs_the_plugins_attack(site):
    proc = run(["-m", "gradleak.cli", "run", "--case", "vision/lenet", "--attack", "mean-image", "--json",
                "--device", "cpu"], site)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # exactly one JSON object, nothing else on stdout
    assert isinstance(result, dict)
    assert result["attack"] == "mean-image" and result["case"] == "vision/lenet"
    psnr = result["metrics"]["psnr"]
    assert isinstance(psnr, (int, float)) and math.isfinite(psnr)
