"""Token batches and the sentence sources: 200 real Rotten Tomatoes sentences offline, or ``--data FILE.txt``.

Encoding styles: ``"bert"`` wraps a sentence as ``[CLS] tokens [SEP]``; ``"gpt2"`` as ``<|endoftext|> tokens
<|endoftext|>`` (GPT-2's BOS and EOS are the same id 50256), so that the next-token loss covers every real
token. Batches are right-padded; the attention mask marks real tokens.

Bad lines of ``--data`` are skipped with a warning naming the line number (empty lines, and sentences longer
than the model's maximum length); a file with no usable line is refused.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from gradleak import Batch
from gradleak.errors import DataError

from .vocab import check_text_file, load_tokenizer

log = logging.getLogger(__name__)

#: Rotten Tomatoes sentences bundled with gensim's test data (Pang & Lee 2005), with their labels.
BUILTIN = "pang_lee_polarity.cor"


@dataclass(frozen=True)
class TextData:
    """Token ids ``(N, L)`` and attention mask ``(N, L)`` (1 = real token), right-padded with ``pad_id``.

    ``tokenizer`` is the key of :func:`gradleak_text.vocab.load_tokenizer`; ``style`` the special-token
    layout (``"bert"`` or ``"gpt2"``).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    tokenizer: str
    style: str
    pad_id: int

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def device(self) -> torch.device:
        return self.ids.device

    def to(self, device: torch.device | str) -> TextData:
        return dataclasses.replace(self, ids=self.ids.to(device), mask=self.mask.to(device))

    def lengths(self) -> list[int]:
        return [int(v) for v in self.mask.sum(1)]

    def sequences(self) -> list[list[int]]:
        """The unpadded token ids of every sample."""
        return [row[:n].tolist() for row, n in zip(self.ids, self.lengths())]

    def texts(self) -> list[str]:
        """Every sample decoded without special tokens (the tokenizer's round trip)."""
        tok = load_tokenizer(self.tokenizer)
        return [tok.decode(seq, skip_special_tokens=True).strip() for seq in self.sequences()]


def pack(sequences: list[list[int]], tokenizer: str, style: str, pad_id: int,
         device: torch.device | str = "cpu") -> TextData:
    """Right-pad token id lists into a :class:`TextData`."""
    length = max((len(s) for s in sequences), default=1) or 1
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, :len(seq)] = 1
    return TextData(ids.to(device), mask.to(device), tokenizer, style, pad_id)


def special_ids(tokenizer: str, style: str) -> tuple[int, int, int]:
    """``(start, end, pad)`` ids of the style."""
    tok = load_tokenizer(tokenizer)
    if style == "bert":
        return int(tok.cls_token_id), int(tok.sep_token_id), int(tok.pad_token_id)
    eos = int(tok.eos_token_id)
    return int(tok.bos_token_id if tok.bos_token_id is not None else eos), eos, eos


def encode(sentences: list[str], tokenizer: str, style: str, max_length: int,
           where: list[str] | None = None, quiet: bool = False) -> tuple[list[list[int]], list[int]]:
    """Token ids of each sentence with the style's special tokens; returns ``(sequences, kept indices)``.

    Sentences longer than ``max_length`` tokens (specials included) are skipped with a warning naming
    ``where[i]`` (e.g. ``"file.txt line 7"``).
    """
    tok = load_tokenizer(tokenizer)
    start, end, _ = special_ids(tokenizer, style)
    out, kept = [], []
    for i, sentence in enumerate(sentences):
        ids = [start, *tok(sentence, add_special_tokens=False)["input_ids"], end]
        if len(ids) > max_length:
            label = where[i] if where else f"sentence {i}"
            (log.debug if quiet else log.warning)("%s: %d tokens, longer than the model's maximum of %d; skipped", label, len(ids), max_length)
            continue
        out.append(ids)
        kept.append(i)
    return out, kept


def builtin_sentences() -> tuple[list[str], list[int]]:
    """The 200 Rotten Tomatoes sentences of gensim's test data and their labels (0 negative, 1 positive)."""
    from gensim.test.utils import datapath

    sentences, labels = [], []
    with open(datapath(BUILTIN), encoding="cp1252") as f:
        for line in f:
            label, _, text = line.strip().partition(" ")
            if text:
                sentences.append(text)
                labels.append(1 if label == "__label__pos" else 0)
    return sentences, labels


def read_sentences(path: Path) -> tuple[list[str], list[str]]:
    """Non-empty lines of a UTF-8 file, one sentence each, with ``"FILE line N"`` labels for warnings.

    Empty lines are skipped with a warning naming their line number; a file without any sentence is refused.
    """
    if path.is_dir():
        raise DataError(f"--data {path}: is a folder; text cases take a UTF-8 file with one sentence a line")
    sentences, where = [], []
    for number, line in enumerate(check_text_file(path), start=1):
        text = line.strip()
        if not text:
            log.warning("%s line %d: empty line; skipped", path, number)
            continue
        sentences.append(text)
        where.append(f"{path} line {number}")
    if not sentences:
        raise DataError(f"--data {path}: holds no sentence; write one sentence a line")
    return sentences, where


def load_text(path: Path | None, tokenizer: str, style: str, max_length: int, classes: int | None,
              device: torch.device) -> Batch:
    """All private sentences as one batch: the built-in ones, or ``path`` (labels cycle ``0..classes-1``)."""
    if path is None:
        sentences, labels = builtin_sentences()
        where = [f"{BUILTIN} line {i + 1}" for i in range(len(sentences))]
    else:
        sentences, where = read_sentences(path)
        labels = [i % classes for i in range(len(sentences))] if classes else []
    seqs, kept = encode(sentences, tokenizer, style, max_length, where)
    if not seqs:
        raise DataError(f"--data {path}: every sentence is longer than the model's maximum of {max_length} tokens; "
                        f"shorten them")
    _, _, pad = special_ids(tokenizer, style)
    data = pack(seqs, tokenizer, style, pad, device)
    y = torch.tensor([labels[i] for i in kept], dtype=torch.long, device=device) if classes else None
    return Batch(data, y, "text")
