"""Shared fixtures of the gradleak-text tests: one torch thread, held-out sentences, a tiny LM prior."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: Sentences written for the tests (not in the built-in Rotten Tomatoes data): "held out".
HELD_OUT = [
    "the quiet harbour town woke to the sound of gulls and rain .",
    "a clever script cannot save this dull and overlong thriller .",
    "her performance is warm , funny and completely convincing .",
    "we left the theatre humming the songs for days .",
]


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def held_out(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "held_out.txt"
    path.write_text("\n".join(HELD_OUT) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A quickly trained lm-prior over the BERT vocabulary (LAMP's discrete step needs one)."""
    from gradleak_text.lm import train_lm

    torch.set_num_threads(1)
    return train_lm("bert", "bert", tmp_path_factory.mktemp("lm") / "bert", steps=12, batch_size=4)
