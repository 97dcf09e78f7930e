"""The ``lm-prior``: a small GPT-2 language model over the attacked model's vocabulary, trained locally.

LAMP (Balunovic et al., NeurIPS 2022) scores candidate sentences by the perplexity of an auxiliary language
model (theirs: a GPT-2 trained on WikiText-103). No such weights install offline, so gradleak trains a tiny
GPT-2 (2 layers, width 128) on public text: the 300 news documents of gensim's ``lee_background.cor`` (never
the attacked sentences). ``gradleak text train-lm`` builds it; LAMP trains one on first use when none is
cached (a minute or two), into ``$GRADLEAK_CACHE/text/lm-<tokenizer>`` (default ``~/.cache/gradleak``).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gradleak import AttackerView, Prior, param
from gradleak.errors import DataError

from .data import encode, special_ids
from .vocab import load_tokenizer

log = logging.getLogger(__name__)

PUBLIC_CORPUS = "lee_background.cor"


def default_path(tokenizer: str) -> Path:
    root = Path(os.environ.get("GRADLEAK_CACHE", Path.home() / ".cache" / "gradleak"))
    return root / "text" / f"lm-{tokenizer}"


def public_sentences() -> list[str]:
    """Sentences of the public news corpus (split on full stops)."""
    from gensim.test.utils import datapath

    text = Path(datapath(PUBLIC_CORPUS)).read_text(encoding="utf-8", errors="replace")
    return [s.strip() + " ." for s in text.replace("\n", " ").split(". ") if len(s.split()) >= 4]


def train_lm(tokenizer: str, style: str, out: Path, steps: int = 200, batch_size: int = 16, lr: float = 3e-3,
             seed: int = 0, device: str | torch.device = "cpu", sentences: list[str] | None = None) -> Path:
    """Train the tiny GPT-2 prior on public sentences and save it (transformers format) into ``out``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if steps < 1:
        raise DataError(f"train-lm: --steps must be >= 1, got {steps}")
    seqs, _ = encode(sentences or public_sentences(), tokenizer, style, 64, quiet=True)
    if not seqs:
        raise DataError("train-lm: no training sentence fits 64 tokens")
    vocab = len(load_tokenizer(tokenizer))
    torch.manual_seed(seed)
    start, end, _ = special_ids(tokenizer, style)
    config = GPT2Config(vocab_size=vocab, n_positions=128, n_embd=128, n_layer=2, n_head=2, bos_token_id=start,
                        eos_token_id=end)
    model = GPT2LMHeadModel(config).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    # LAMP's first discrete step trains the prior lazily, from inside its no-grad scoring.
    with torch.enable_grad():
        for step in range(steps):
            pick = torch.randint(len(seqs), (batch_size,), generator=gen).tolist()
            ids = _pad([seqs[i] for i in pick], device)
            loss = sequence_nll(model, ids).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 100 == 0 or step == steps - 1:
                log.info("train-lm step %d/%d: loss %.3f", step + 1, steps, float(loss.detach()))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def _pad(seqs: list[list[int]], device: torch.device | str) -> torch.Tensor:
    """Right-pad with -1 (ignored by :func:`sequence_nll`)."""
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), -1, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    return ids.to(device)


def sequence_nll(lm: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood of each row of ``ids`` (``-1`` marks padding): log-perplexity."""
    real = ids >= 0
    logits = lm(input_ids=ids.clamp_min(0), attention_mask=real.long()).logits[:, :-1]
    target = ids[:, 1:]
    keep = real[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), target.clamp_min(0), reduction="none")
    return (nll * keep).sum(1) / keep.sum(1).clamp_min(1)


@functools.lru_cache(maxsize=4)
def load_lm(path: str, device: str) -> torch.nn.Module:
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(path).to(device).eval()


def tokenizer_of(model: torch.nn.Module) -> tuple[str, str]:
    """``(tokenizer, style)`` of an attacked model (BERT classifiers use bert-base-uncased, GPT-2 its BPE)."""
    return ("bert", "bert") if hasattr(model, "bert") else ("gpt2", "gpt2")


@dataclass(frozen=True)
class LMPriorConfig:
    path: str = param("", "folder of a trained prior (empty: the cached one, trained on first use)")
    train_steps: int = param(200, "training steps when no prior is cached")


class LMPrior(Prior):
    """Language-model prior (LAMP): mean next-token NLL of candidate token ids under a small local GPT-2.

    ``penalty(ids, view)`` takes token ids ``(restarts, batch, L)`` and returns the batch-mean log-perplexity
    per restart.
    """

    name = "lm-prior"
    modalities = frozenset({"text"})
    paper = "Balunovic et al., LAMP: Extracting Text from Gradients with Language Model Priors, NeurIPS 2022"
    Config = LMPriorConfig

    def model(self, view: AttackerView) -> torch.nn.Module:
        tokenizer, style = tokenizer_of(view.model)
        path = Path(self.config.path) if self.config.path else default_path(tokenizer)
        if not (path / "config.json").exists():
            if self.config.path:
                raise DataError(f"lm-prior: {path} holds no trained model; build one with "
                                f"`gradleak text train-lm --tokenizer {tokenizer} --out {path}`")
            log.warning("no LM prior cached for the %s tokenizer; training one into %s (once)", tokenizer, path)
            train_lm(tokenizer, style, path, steps=self.config.train_steps, device=self.device)
        return load_lm(str(path), str(self.device))

    def penalty(self, inputs: torch.Tensor, view: AttackerView) -> torch.Tensor:
        lm = self.model(view)
        R, B, L = inputs.shape
        return sequence_nll(lm, inputs.reshape(R * B, L)).view(R, B).mean(1)


PRIORS = (LMPrior,)
