"""Data loading, bad input, the modality's plumbing and the metrics."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from click.testing import CliRunner

import gradleak
from gradleak.cli import cli
from gradleak_text.cases import BertTiny, GPT2Tiny
from gradleak_text.data import TextData, pack
from gradleak_text.metrics import Exact, Rouge1, Rouge2, RougeL, TokenAccuracy
from gradleak_text.modality import Text


def test_builtin_rotten_tomatoes_sentences_with_labels():
    batch = GPT2Tiny().load_data(None)
    assert len(batch) == 200 and batch.labels is None
    assert batch.data.texts()[0] == "simplistic , silly and tedious ."
    ids = batch.data.ids[0]
    assert ids[0] == 50256 and ids[int(batch.data.mask[0].sum()) - 1] == 50256  # BOS ... EOS
    bert = BertTiny().load_data(None)
    assert bert.labels is not None and set(bert.labels.tolist()) == {0, 1}
    assert bert.data.ids[0, 0] == 101  # [CLS]


def test_bad_lines_are_skipped_with_their_line_number(tmp_path, caplog):
    path = tmp_path / "s.txt"
    path.write_text("a good film .\n\n" + "word " * 200 + "\nanother one .\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        batch = BertTiny().load_data(path)
    assert batch.data.texts() == ["a good film.", "another one."]
    assert f"{path} line 2: empty line" in caplog.text
    assert f"{path} line 3:" in caplog.text and "longer than the model's maximum" in caplog.text


def test_non_utf8_file_exits_2_naming_file_and_offset(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    out = CliRunner().invoke(cli, ["run", "--case", "text/bert-tiny", "--attack", "dager", "--data", str(path),
                                   "--device", "cpu"])
    assert out.exit_code == 2
    assert str(path) in out.output and "offset 3" in out.output and "UTF-8" in out.output


def test_hub_model_offline_exits_2_saying_not_cached():
    out = CliRunner().invoke(cli, ["run", "--case", "text/gpt2-tiny", "--attack", "dager", "--device", "cpu",
                                   "--set", "model=gradleak-tests/no-such-model"])
    assert out.exit_code == 2
    assert "not cached locally" in out.output


def _batch(texts: list[list[int]]) -> gradleak.Batch:
    return gradleak.Batch(pack(texts, "gpt2", "gpt2", 50256), None, "text")


def test_select_trims_padding_and_concat_and_save(tmp_path):
    t = Text()
    b = _batch([[50256, 15496, 995, 50256], [50256, 15496, 50256]])
    one = t.select(b, torch.tensor([1]))
    assert one.data.ids.shape == (1, 3) and one.data.texts() == ["Hello"]
    both = t.concat([one, t.select(b, torch.tensor([0]))])
    assert both.data.texts() == ["Hello", "Hello world"]
    t.save(both, tmp_path, "truth")
    assert json.loads((tmp_path / "truth.json").read_text()) == ["Hello", "Hello world"]
    diff = t.save_pictures(both, t.concat([one, one]), tmp_path)["diff"]
    assert "<del>world</del>" in (tmp_path / "diff.html").read_text() and diff.endswith("diff.html")


def test_metrics_on_known_strings_and_order_invariant_matching():
    truth = _batch([[50256, 15496, 995, 50256], [50256, 464, 3797, 318, 922, 50256]])  # Hello world / The film is good
    recon = _batch([[50256, 464, 3797, 318, 922, 50256], [50256, 15496, 3797, 50256]])  # The film is good / Hello film
    t = Text()
    cost = t.pairwise_cost(recon, truth)
    assert cost[0, 1] == 0 and cost[1, 0] == pytest.approx(0.5)
    order = torch.tensor([1, 0])
    matched = t.select(recon, order)
    assert Rouge1()(matched, truth).tolist() == pytest.approx([0.5, 1.0])
    assert Rouge2()(matched, truth).tolist() == pytest.approx([0.0, 1.0])
    assert RougeL()(matched, truth).tolist() == pytest.approx([0.5, 1.0])
    assert Exact()(matched, truth).tolist() == [0.0, 1.0]
    assert TokenAccuracy()(matched, truth).tolist() == pytest.approx([0.5, 1.0])


def test_text_data_moves_and_counts():
    d = TextData(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), "gpt2", "gpt2", 0)
    assert len(d) == 2 and d.to("cpu").lengths() == [3, 3]
