"""Selective homomorphic encryption of the update (CKKS through TenSEAL): the server reads only the rest."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..components import ClientContext
from ..config import param
from ..errors import ConfigError, IncompatibleError
from ..optional import import_optional
from ..types import Update
from .defenses import UpdateDefense
from .utility import outputs, training_cost

Metric = Literal["magnitude", "sensitivity", "layer", "random", "distance"]


def _tenseal() -> Any:
    return import_optional("tenseal", "gradleak[he]", "selective-encryption (CKKS homomorphic encryption)")


@dataclass(frozen=True)
class SelectiveEncryptionConfig:
    ratio: float = param(0.1, "fraction of the update's entries encrypted, in (0, 1] (1: full encryption)")
    metric: Metric = param("magnitude", "significance ranking the entries: magnitude |g|, sensitivity |g*w|, "
                                        "layer (whole layers from the input side), random, distance")
    attacker: Literal["masked", "naive"] = param(
        "masked", "what the server's attack exploits: masked matches only the plaintext coordinates; naive "
                  "takes the encrypted ones as zeros")
    poly_modulus_degree: int = param(8192, "CKKS ring dimension N (N/2 values per ciphertext; 8192 or more)")
    scale_bits: int = param(40, "CKKS scale 2**bits (precision of the encrypted values)")

    def validate(self, owner: str) -> None:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"{owner}: ratio must be in (0, 1] (the fraction of entries encrypted), got {self.ratio}")
        if self.poly_modulus_degree not in (8192, 16384, 32768):
            raise ConfigError(f"{owner}: poly_modulus_degree must be 8192, 16384 or 32768, got {self.poly_modulus_degree}")
        if not 20 <= self.scale_bits <= 50:
            raise ConfigError(f"{owner}: scale_bits must be from 20 to 50, got {self.scale_bits}")
        _tenseal()  # refuse the run before any compute when TenSEAL is missing


@dataclass
class Ciphertexts:
    """One client's encrypted values: CKKS vectors of ``slots`` values each, their serialized size, the time."""

    vectors: list[Any]
    length: int
    nbytes: int = 0
    seconds: float = 0.0
    meta: dict[str, float] = field(default_factory=dict)


class CKKS:
    """A CKKS context shared by the clients (they hold the secret key; the server only adds ciphertexts)."""

    def __init__(self, poly_modulus_degree: int = 8192, scale_bits: int = 40) -> None:
        ts = _tenseal()
        # Scale + two 40-bit levels with 60-bit special primes: one addition-only depth with room to spare.
        bits = [60, scale_bits, scale_bits, 60]
        self.context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=poly_modulus_degree, coeff_mod_bit_sizes=bits)
        self.context.global_scale = 2.0**scale_bits
        self.slots = poly_modulus_degree // 2

    def encrypt(self, values: torch.Tensor) -> Ciphertexts:
        """Encrypt a flat tensor, chunk by chunk; the size counted is that of the serialized ciphertexts."""
        ts = _tenseal()
        flat = values.detach().double().cpu().reshape(-1).tolist()
        start = time.perf_counter()
        vectors, nbytes = [], 0
        for i in range(0, len(flat), self.slots):
            vec = ts.ckks_vector(self.context, flat[i:i + self.slots])
            nbytes += len(vec.serialize())
            vectors.append(vec)
        return Ciphertexts(vectors, len(flat), nbytes, time.perf_counter() - start)

    @staticmethod
    def aggregate(parts: Sequence[Ciphertexts]) -> Ciphertexts:
        """The server's homomorphic sum of several clients' ciphertexts (same selection, same length)."""
        if not parts or len({p.length for p in parts}) != 1:
            raise ValueError("homomorphic aggregation needs at least one part and equal lengths")
        vectors = list(parts[0].vectors)
        for part in parts[1:]:
            vectors = [a + b for a, b in zip(vectors, part.vectors)]
        return Ciphertexts(vectors, parts[0].length)

    @staticmethod
    def decrypt(part: Ciphertexts) -> torch.Tensor:
        values = [v for vec in part.vectors for v in vec.decrypt()]
        return torch.tensor(values[:part.length], dtype=torch.float64)


def _gradient(context: ClientContext, batch: Any) -> dict[str, torch.Tensor]:
    params = {n: p.detach().requires_grad_(True) for n, p in context.model.named_parameters() if p.requires_grad}
    with torch.enable_grad():
        loss = context.case.loss(outputs(context, params, batch=batch), batch.labels)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p)).detach() for (n, p), g in zip(params.items(), grads)}


def significance(update: Update, metric: str, generator: torch.Generator, context: ClientContext | None,
                 references: int = 4) -> dict[str, torch.Tensor]:
    """Per-entry significance scores (higher: encrypted first) of every tensor of ``update``.

    - ``magnitude``: ``|g_j|``; ``sensitivity``: ``|g_j * w_j|`` with ``w`` the client's received weights;
    - ``layer``: whole tensors in parameter order, from the input side (earliest entries first);
    - ``random``: uniform scores from ``generator``;
    - ``distance``: ``mean_k (g_j(X) - g_j(X'_k))^2``, each coordinate's share of the squared gradient
      distance between the client's batch ``X`` and ``references`` random batches ``X'_k`` (Gaussian with the
      data's mean and std, the same labels): the coordinates that most separate the true data from other data
      in the attacker's matching distance. Gu et al. derive significance from a distance analysis without
      public code; this is our reading of it (continuous data only).
    """
    tensors = update.tensors
    if metric == "magnitude":
        return {k: t.abs() for k, t in tensors.items()}
    if metric == "random":
        return {k: torch.rand(t.shape, generator=generator, device=generator.device).to(t.device) for k, t in tensors.items()}
    if metric == "layer":
        scores, offset = {}, 0
        total = sum(t.numel() for t in tensors.values())
        for k, t in tensors.items():
            pos = torch.arange(offset, offset + t.numel(), device=t.device, dtype=torch.float64)
            scores[k] = (total - pos).reshape(t.shape)
            offset += t.numel()
        return scores
    if context is None:
        raise ConfigError(f"selective-encryption: metric '{metric}' needs the client's model and batch")
    if metric == "sensitivity":
        weights = dict(context.model.named_parameters())
        return {k: (t * weights[k].detach().to(t)).abs() for k, t in tensors.items()}
    data = context.batch.data
    if not (isinstance(data, torch.Tensor) and data.is_floating_point()):
        raise IncompatibleError("selective-encryption: metric 'distance' needs continuous data (a float tensor); "
                                "use metric=magnitude")
    true = _gradient(context, context.batch)
    scores = {k: torch.zeros_like(t, dtype=torch.float64) for k, t in tensors.items()}
    mean, std = data.mean(), data.std().clamp_min(1e-6)
    for _ in range(references):
        noise = torch.randn(data.shape, generator=generator, device=generator.device, dtype=data.dtype).to(data.device)
        other = _gradient(context, context.batch.replace(data=mean + std * noise))
        for k in scores:
            scores[k] += (true[k] - other[k]).double().pow(2) / references
    return scores


def top_mask(scores: Mapping[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``round(ratio * total)`` highest scores over all tensors together (at least one)."""
    names = list(scores)
    flat = torch.cat([scores[k].reshape(-1).double() for k in names])
    k = max(1, min(flat.numel(), int(round(ratio * flat.numel()))))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, k).indices] = True
    masks, offset = {}, 0
    for name in names:
        n = scores[name].numel()
        masks[name] = chosen[offset:offset + n].reshape(scores[name].shape)
        offset += n
    return masks


class SelectiveEncryption(UpdateDefense):
    """Selective homomorphic encryption (Gu, Yao, Wang, Joe-Wong, "Evaluating Selective Encryption Against GIAs").

    The ``ratio`` fraction of the update's entries with the highest significance (:func:`significance`; one
    global ranking over all tensors) is encrypted with CKKS through TenSEAL (:class:`CKKS`, ring dimension
    ``poly_modulus_degree``, scale ``2**scale_bits``) and aggregated homomorphically by the server; the rest is
    sent in the clear. The server's attack sees the plaintext part with zeros in place of the encrypted entries;
    with ``attacker=masked`` the update also carries the mask of visible coordinates (``Update.visible``) and
    optimization attacks match only those (the strongest attacker); ``naive`` matches the zeros as values.

    ``utility_cost`` reports ``he_seconds`` (encryption and serialization time), ``he_bytes`` (serialized
    ciphertext size), ``he_bytes_full`` (the same for the whole update: its ciphertext count times the size of
    one), ``encrypted_fraction`` and the training cost of the update the federation really applies (plaintext
    part plus the decrypted homomorphic aggregate, so only CKKS rounding remains).
    """

    name = "selective-encryption"
    Config = SelectiveEncryptionConfig
    paper = "Gu, Yao, Wang, Joe-Wong 2025, Evaluating Selective Encryption Against Gradient Inversion Attacks (arXiv 2508.04155)"

    def __init__(self, config=None, device="cpu") -> None:
        super().__init__(config, device)
        self._ckks: CKKS | None = None
        self._last: tuple[Update, Ciphertexts] | None = None

    @property
    def ckks(self) -> CKKS:
        if self._ckks is None:
            self._ckks = CKKS(self.config.poly_modulus_degree, self.config.scale_bits)
        return self._ckks

    def apply_update(self, update: Update, generator: torch.Generator, context: ClientContext | None = None) -> Update:
        cfg = self.config
        masks = top_mask(significance(update, cfg.metric, generator, context), cfg.ratio)
        hidden = torch.cat([update.tensors[k].reshape(-1)[masks[k].reshape(-1)] for k in masks])
        encrypted = self.ckks.encrypt(hidden)
        total = sum(t.numel() for t in update.tensors.values())
        per_ciphertext = encrypted.nbytes / max(1, len(encrypted.vectors))
        encrypted.meta = {"he_bytes_full": per_ciphertext * math.ceil(total / self.ckks.slots),
                          "encrypted_fraction": hidden.numel() / total}
        # What the federation applies: the clear part plus the decrypted homomorphic aggregate.
        values = self.ckks.decrypt(self.ckks.aggregate([encrypted]))
        applied, offset = {}, 0
        for k, t in update.tensors.items():
            m = masks[k]
            out = t.clone()
            n = int(m.sum())
            out[m] = values[offset:offset + n].to(t)
            offset += n
            applied[k] = out
        self._last = (update.with_tensors(applied), encrypted)
        plain = {k: torch.where(masks[k], torch.zeros_like(t), t) for k, t in update.tensors.items()}
        visible = {k: ~m for k, m in masks.items()} if cfg.attacker == "masked" else None
        return update.replace(tensors=plain, visible=visible)

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        if self._last is None:
            return super().utility_cost(clean, defended, context)
        applied, encrypted = self._last
        cost = training_cost(clean, applied, context)
        cost.update(he_seconds=encrypted.seconds, he_bytes=float(encrypted.nbytes), **encrypted.meta)
        return cost
