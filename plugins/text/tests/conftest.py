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


#: Four more held-out sentences: with :data:`HELD_OUT` a batch of 8 whose first layer is crowded (more
#: (token, position) pairs than distinct tokens plus positions).
HELD_OUT_MORE = [
    "the second act drags , but the ending lands with real force .",
    "a gentle , patient film about two brothers and an old boat .",
    "nothing in this loud sequel feels new or earned .",
    "the cast sells every joke , even the ones that should not work .",
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
def held_out_8(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "held_out_8.txt"
    path.write_text("\n".join(HELD_OUT + HELD_OUT_MORE) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A quickly trained lm-prior over the BERT vocabulary (LAMP's discrete step needs one)."""
    from gradleak_text.lm import train_lm

    torch.set_num_threads(1)
    return train_lm("bert", "bert", tmp_path_factory.mktemp("lm") / "bert", steps=12, batch_size=4)
