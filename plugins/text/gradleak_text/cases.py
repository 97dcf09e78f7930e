"""Text cases: BERT-family sequence classifiers and GPT-2-family causal language models (transformers).

``model`` (``--set model=...``) replaces the default network by a local folder or a cached hub checkpoint
(``bert-base-uncased``, ``gpt2``); a name that is not cached exits 2, since a run never downloads.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gradleak import Batch, Case, CaseConfig, param

from .data import load_text
from .vocab import load_pretrained, minilm_path


def _seeded(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


@dataclass(frozen=True)
class LMOutput:
    """Next-token logits of a causal LM with the ids and mask they predict (the loss needs both)."""

    logits: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class TextCaseConfig(CaseConfig):
    model: str = param("", "a local folder or cached hub checkpoint replacing the default model (empty: default)")


@functools.lru_cache(maxsize=2)
def _pretrained_classifier(name: str) -> torch.nn.Module:
    from transformers import BertForSequenceClassification

    from transformers.utils import logging as hf_logging

    # The checkpoint has no classification head: transformers reports it as missing (expected here).
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = load_pretrained(BertForSequenceClassification, name, "model", num_labels=2,
                                attn_implementation="eager")
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model.eval()


class _BertCase(Case):
    modality = "text"
    num_classes = 2
    default_batch_size = 4
    Config = TextCaseConfig
    tokenizer = "bert"
    style = "bert"
    max_length = 128

    def _fresh(self, seed: int) -> torch.nn.Module:
        raise NotImplementedError

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        seed = _seeded(generator)
        with torch.random.fork_rng(devices=[]):
            if self.config.model:
                model = copy.deepcopy(_pretrained_classifier(self.config.model))
                torch.manual_seed(seed)  # after loading: the first load draws the missing head itself
                _reinit_head(model)
            else:
                model = self._fresh(seed)
        return model.to(self.device)

    def forward(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return model(input_ids=batch.data.ids, attention_mask=batch.data.mask).logits

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Mean cross-entropy; ``labels`` are class ids ``(N,)`` or class probabilities ``(N, K)``."""
        if labels is not None and labels.dim() == 2:
            return -(labels * outputs.log_softmax(-1)).sum(-1).mean()
        return F.cross_entropy(outputs, labels)

    def load_data(self, path: Path | None) -> Batch:
        return load_text(path, self.tokenizer, self.style, self.max_length, self.num_classes, self.device)


def _reinit_head(model: torch.nn.Module) -> None:
    """The classification head is new: draw it as transformers does (N(0, initializer_range), zero bias)."""
    std = model.config.initializer_range
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, std)
        model.classifier.bias.zero_()


class BertMiniLM(_BertCase):
    """Sentiment classifier on the real pretrained all-MiniLM-L6-v2 (BERT, 6 layers, width 384) with a new head.

    Built-in data: 200 Rotten Tomatoes sentences (gensim test data, Pang & Lee 2005) with their labels;
    ``--data`` takes a UTF-8 file, one sentence a line (labels cycle 0, 1). Tokenizer: bert-base-uncased.
    """

    name = "bert-minilm"
    max_length = 128

    def _fresh(self, seed: int) -> torch.nn.Module:
        model = copy.deepcopy(_pretrained_classifier(str(minilm_path())))
        torch.manual_seed(seed)
        _reinit_head(model)
        return model


class BertTiny(_BertCase):
    """Random-init tiny BERT classifier (2 layers, width 128, 2 heads) on the bert-base-uncased vocabulary.

    Fast stand-in for BERT-family attacks; same data as ``text/bert-minilm``.
    """

    name = "bert-tiny"
    max_length = 128

    def _fresh(self, seed: int) -> torch.nn.Module:
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(seed)
        config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=512, max_position_embeddings=self.max_length, num_labels=2,
                            attn_implementation="eager")
        return BertForSequenceClassification(config).eval()


class GPT2Tiny(Case):
    """Random-init GPT-2 causal LM (2 layers of GPT-2's width 768, 12 heads) on GPT-2's real tokenizer.

    Next-token prediction on ``<|endoftext|> sentence <|endoftext|>``; mean cross-entropy over real tokens.
    Built-in data: 200 Rotten Tomatoes sentences; ``--data`` takes a UTF-8 file, one sentence a line.
    """

    name = "gpt2-tiny"
    modality = "text"
    num_classes = None
    default_batch_size = 4
    Config = TextCaseConfig
    tokenizer = "gpt2"
    style = "gpt2"
    max_length = 128

    def build_model(self, generator: torch.Generator) -> torch.nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seeded(generator))
            if self.config.model:
                model = load_pretrained(GPT2LMHeadModel, self.config.model, "model", attn_implementation="eager")
            else:
                config = GPT2Config(vocab_size=50257, n_positions=self.max_length, n_embd=768, n_layer=2, n_head=12,
                                    bos_token_id=50256, eos_token_id=50256, attn_implementation="eager")
                model = GPT2LMHeadModel(config)
        return model.eval().to(self.device)

    def forward(self, model: torch.nn.Module, batch: Batch) -> LMOutput:
        d = batch.data
        positions = torch.arange(d.ids.shape[1], device=d.ids.device).expand_as(d.ids)
        logits = model(input_ids=d.ids, attention_mask=d.mask, position_ids=positions).logits
        return LMOutput(logits, d.ids, d.mask)

    def loss(self, outputs: LMOutput, labels: Any) -> torch.Tensor:
        """Mean next-token cross-entropy over the positions whose target is a real token."""
        logits = outputs.logits[:, :-1].flatten(0, 1)
        target = outputs.ids[:, 1:].flatten()
        keep = outputs.mask[:, 1:].flatten().bool()
        return F.cross_entropy(logits[keep], target[keep])

    def load_data(self, path: Path | None) -> Batch:
        return load_text(path, self.tokenizer, self.style, self.max_length, None, self.device)


CASES = (BertMiniLM, GPT2Tiny, BertTiny)
