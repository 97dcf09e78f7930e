"""Shared fixtures of the gradleak-graph tests (torch-geometric imports once per session)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny graphs and models run fastest on one thread, and robustly on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def smiles_file(tmp_path: Path):
    """``smiles_file(lines) -> path`` of a ``.smi`` file with those lines."""

    def write(lines: list[str], name: str = "mols.smi") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture(scope="session")
def molecules():
    """The first built-in NCI molecules (real, connected, <= 25 atoms)."""
    from gradleak_graph.data import nci_molecules

    return nci_molecules(12)
