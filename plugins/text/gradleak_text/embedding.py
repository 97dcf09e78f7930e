"""Continuous text search: candidate input embeddings whose gradient matches the observed update (TAG, LAMP).

What the attacker reads off the update before optimising (the token-recovery toolkit):

- the sequence length: the position-embedding gradient is non-zero exactly at the positions the batch uses
  (GPT-2's final ``<|endoftext|>`` predicts nothing and stays invisible, so one is added);
- the bag of tokens: rows of an untied word-embedding gradient are non-zero exactly for the batch's tokens
  (BERT); with tied embeddings (GPT-2) the output layer makes every row non-zero, so the ``4 x`` (positions
  times batch) rows of largest norm are kept;
- the labels of a classifier (LLG label counting of :mod:`gradleak.engine.labels`) unless granted.

Under selective encryption (``Update.visible``) the attacker matches only the coordinates it reads in the
clear (the masked attacker) and keeps wholly encrypted embedding rows among the candidate tokens and
positions; an update whose clear part reveals no token is reported as ``failed: zero``.

The word-embedding matrix itself is left out of the matching: candidates enter as embeddings, so it has no
gradient through the input (its tied output-layer part would be matched on a stale vocabulary projection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gradleak import AttackFailed, AttackerView, Update
from gradleak.engine import count_labels
from gradleak.engine import objectives as engine_objectives

from .cases import LMOutput
from .data import TextData, special_ids
from .lm import tokenizer_of


def lamp_cosine(G: Sequence[torch.Tensor], T: Sequence[torch.Tensor]) -> torch.Tensor:
    """LAMP's cos loss: the mean over parameter tensors of ``1 - cos(G_l, T_l)`` (per restart ``(R,)``)."""
    terms = []
    for g, t in zip(G, T):
        g, t = g.flatten(1), t.flatten().unsqueeze(0)
        terms.append(1 - (g * t).sum(1) / (g.norm(dim=1) * t.norm()).clamp_min(1e-24))
    return torch.stack(terms).mean(0)


def make_distance(name: str, alpha: float = 0.01):
    """``"cos"`` (LAMP), ``"l1l2"`` (TAG / LAMP's L2 + alpha L1, the engine's ``tag`` objective), ``"l2"``."""
    if name == "cos":
        return lamp_cosine
    if name == "l1l2":
        return engine_objectives.tag(alpha)
    return engine_objectives.l2


@dataclass
class Shape:
    """What the update reveals about the batch: padded length, allowed tokens, labels, special ids."""

    length: int
    allowed: torch.Tensor
    labels: torch.Tensor | None
    start: int
    end: int
    pad: int
    tokenizer: str
    style: str


class EmbeddingMatch:
    """The client's gradient as a function of input embeddings ``(B, L, d)``, and its distance to the update."""

    def __init__(self, view: AttackerView, update: Update, distance: str, alpha: float = 0.01) -> None:
        self.view = view
        self.model = view.model
        self.embedding = self.model.get_input_embeddings().weight
        skip = {id(self.embedding)}
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in skip]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.target = [update.tensors[n].detach() for n in self.names]
        # Part of the update may be encrypted (selective encryption): match only the coordinates seen in the
        # clear, by zeroing the hidden ones on both sides.
        visible = update.visible or {}
        self.masks = [visible[n].to(t.device, t.dtype) if n in visible else None for n, t in zip(self.names, self.target)]
        self.target = [t if m is None else t * m for t, m in zip(self.target, self.masks)]
        self.distance = make_distance(distance, alpha)
        self.gpt2 = not hasattr(self.model, "bert")
        self.update = update

    def shape(self) -> Shape:
        """Length, token bag and labels read off the update (see the module docstring)."""
        view, update = self.view, self.update
        tokenizer, style = tokenizer_of(self.model)
        start, end, pad = special_ids(tokenizer, style)
        pos_name = next(n for n, p in self.model.named_parameters()
                        if "position_embeddings" in n or n.endswith("wpe.weight"))
        rows, hidden = _row_mass(update, pos_name)
        used = ((rows > 0) | hidden).nonzero().flatten()
        length = int(used.max()) + 1 if used.numel() else 2
        emb_name = next(n for n, p in self.model.named_parameters() if p is self.embedding)
        rows, hidden = _row_mass(update, emb_name)
        if self.gpt2:
            length += 1  # the final <|endoftext|> has no gradient
            k = min(rows.numel(), 4 * length * view.batch_size)
            allowed = torch.cat([rows.topk(k).indices, hidden.nonzero().flatten()]).unique()
        else:
            allowed = ((rows > 0) | hidden).nonzero().flatten()
        allowed = allowed[~torch.isin(allowed, torch.tensor([start, end, pad], device=allowed.device))]
        if not allowed.numel():
            raise AttackFailed("zero", "the embedding gradient reveals no token: every row is zero in the clear")
        labels = None
        if view.num_classes is not None:
            labels = view.labels if view.labels is not None else count_labels(view, update)
        return Shape(max(length, 2), allowed, labels, start, end, pad, tokenizer, style)

    def gradients(self, x: torch.Tensor, labels: torch.Tensor | None, targets: torch.Tensor | None,
                  create_graph: bool) -> tuple[torch.Tensor, ...]:
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        if self.gpt2:
            positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
            logits = self.model(inputs_embeds=x, attention_mask=mask, position_ids=positions).logits
            loss = self.view.loss(LMOutput(logits, targets, mask), None)
        else:
            loss = self.view.loss(self.model(inputs_embeds=x, attention_mask=mask).logits, labels)
        return torch.autograd.grad(loss, self.params, create_graph=create_graph, allow_unused=True)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None, targets: torch.Tensor | None,
             create_graph: bool = True) -> torch.Tensor:
        grads = self.gradients(x, labels, targets, create_graph)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params)]
        grads = [g if m is None else g * m for g, m in zip(grads, self.masks)]
        return self.distance([g.unsqueeze(0) for g in grads], self.target)[0]


def _row_mass(update: Update, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of an embedding-like gradient: its L1 mass in the clear, and whether it is wholly encrypted.

    A wholly hidden row may belong to a used token or position (the magnitude metric hides exactly those),
    so callers keep it as a candidate; a row with clear coordinates is used when any of them is non-zero.
    """
    t = update.tensors[name]
    mask = (update.visible or {}).get(name)
    if mask is None:
        return t.abs().sum(1), torch.zeros(t.shape[0], dtype=torch.bool, device=t.device)
    mask = mask.to(t.device)
    return (t.abs() * mask).sum(1), ~mask.any(1)


def project(x: torch.Tensor, embedding: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Token ids ``(B, L)`` of the allowed tokens nearest to each embedding by cosine similarity."""
    table = embedding[allowed]
    sim = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
    return allowed[sim.argmax(-1)]


def fix_specials(x: torch.Tensor, embedding: torch.Tensor, shape: Shape) -> None:
    """Pin the start and end tokens (known from the tokenizer's layout) in place."""
    with torch.no_grad():
        x[:, 0] = embedding[shape.start]
        x[:, -1] = embedding[shape.end]


def to_ids(x: torch.Tensor, embedding: torch.Tensor, shape: Shape) -> torch.Tensor:
    ids = project(x.detach(), embedding.detach(), shape.allowed)
    ids[:, 0], ids[:, -1] = shape.start, shape.end
    return ids


def text_data(ids: torch.Tensor, shape: Shape) -> TextData:
    return TextData(ids.detach(), torch.ones_like(ids), shape.tokenizer, shape.style, shape.pad)
