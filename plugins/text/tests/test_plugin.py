"""Registration through the entry point and the conformance kit."""

from __future__ import annotations

import gradleak
from gradleak.testing import check_plugin


def test_the_plugin_registers_its_components():
    reg = gradleak.Registry()
    assert reg.infos["text"].status == "ok", reg.infos["text"].error
    assert reg.modality("text").plugin == "text"
    for case in ("text/bert-minilm", "text/gpt2-tiny", "text/bert-tiny"):
        assert reg.get("case", case).modality == "text"
    for attack in ("tag", "lamp", "dager"):
        assert reg.get("attack", attack, modality="text").plugin == "text"
    assert reg.get("prior", "lm-prior").plugin == "text"
    for metric in ("rouge1", "rouge2", "rouge_l", "token_acc", "exact"):
        assert reg.get("metric", metric, modality="text").plugin == "text"


def test_conformance_kit():
    check_plugin("text")


def test_generic_image_attacks_refuse_text_cases():
    import pytest

    with pytest.raises(gradleak.IncompatibleError):
        gradleak.plan("text/bert-tiny", "dlg", device="cpu")
