"""Low-rank span tools of DAGER (Petrov et al., NeurIPS 2024) for BERT and GPT-2 models.

For a linear layer ``Y = X W^T`` fed by the ``T`` token vectors ``X`` of a batch, ``dL/dW = dY^T X``: when
``T`` is below the width, its row space is exactly ``span(X)``. :class:`Architecture` exposes, for the two
model families, the observed gradients of the first and second attention input projections (Q, K and V
stacked, so a token counts when any of the three is used), the pieces of the first layer's input
``LN(E[v] + P[p])`` and the exact second-layer inputs of candidate sequences.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from gradleak import Update
from gradleak.errors import IncompatibleError


@dataclass(frozen=True)
class Basis:
    """An orthonormal basis ``R`` (``d x r``, float64) of a gradient's input span and its singular values."""

    R: torch.Tensor
    singular: torch.Tensor

    @property
    def rank(self) -> int:
        return int(self.R.shape[1])

    @functools.cached_property
    def R32(self) -> torch.Tensor:
        """``R`` in float32, for rough first passes."""
        return self.R.float()


def input_span(G: torch.Tensor, rank_tol: float) -> Basis:
    """Basis of the column space of ``G`` (``d x m``): its left singular vectors up to the numerical rank.

    DAGER takes ``matrix_rank(grad, tol)`` with an absolute tolerance tuned per batch size; we use a
    tolerance relative to the largest singular value plus a gap search (:func:`numerical_rank`).
    """
    # A float64 SVD of G itself: the Gram matrix G G^T would square the singular values and blur the gap
    # between the smallest genuine ones and float32 noise.
    U, S, _ = torch.linalg.svd(G.double(), full_matrices=False)
    return Basis(U[:, :numerical_rank(S, rank_tol)].contiguous(), S)


def numerical_rank(S: torch.Tensor, rank_tol: float, min_gap: float = 5.0) -> int:
    """Rank from descending singular values: all above ``rank_tol * S[0]`` count; below it (where float32
    noise lives, ~1e-8..1e-7 relative) the cut goes at the largest drop if it exceeds ``min_gap``.

    Small random models have genuine singular values below 1e-6 relative, above a noise floor ten times
    lower: a fixed tolerance (DAGER tunes one per batch size) would cut them off."""
    if not S.numel() or S[0] <= 0:
        return 0
    above = int((S > rank_tol * S[0]).sum())
    tail = S[max(above - 1, 0):]
    if tail.numel() < 2:
        return above
    ratios = tail[:-1] / tail[1:].clamp_min(1e-300)
    i = int(ratios.argmax())
    return max(above - 1, 0) + i + 1 if float(ratios[i]) > min_gap else above


def span_distance(basis: Basis, Y: torch.Tensor, exact_below: float = 0.05) -> torch.Tensor:
    """``||Y - R R^T Y|| / ||Y||`` along the last dimension (0 for a vector in the span), as float64.

    A float32 pass (a few 1e-6 of cancellation error near 0) is recomputed in float64 wherever it is below
    ``exact_below``, so every distance a threshold or a close ranking reads is exact and only far candidates
    keep their float32 value (the search runs this over thousands of candidates per step)."""
    rough = _residual(Y.float(), basis.R32).double()
    close = (rough < exact_below).nonzero(as_tuple=True)
    if close[0].numel():
        rough[close] = _residual(Y[close].double(), basis.R)
    return rough


def _residual(Y: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    return (Y - (Y @ R) @ R.T).norm(dim=-1) / Y.norm(dim=-1).clamp_min(1e-30)


def layer_norm_distances(E: torch.Tensor, C: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
                         basis: Basis, keep_below: float = 0.05) -> torch.Tensor:
    """``dist[v, p]`` of ``LN(E[v] + C[p])`` to the span (see :func:`_ln_distances`), exact in float64 where it
    matters: a float32 pass over the whole vocabulary (cancellation limits it to ~1e-3) keeps the tokens
    below ``keep_below`` at some position, which are then recomputed in float64; the others keep their
    float32 value."""
    rough = _ln_distances(E, C, gamma, beta, eps, basis, torch.float32).double()
    close = (rough < keep_below).any(1).nonzero().flatten()
    if close.numel():
        rough[close] = _ln_distances(E[close], C, gamma, beta, eps, basis, torch.float64)
    return rough


def _ln_distances(E: torch.Tensor, C: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
                  basis: Basis, dtype: torch.dtype, chunk: int = 8192) -> torch.Tensor:
    """``dist[v, p]`` of ``LN(E[v] + C[p])`` to the span, for every token ``v`` and position ``p`` at once.

    Forming all ``V x P`` LayerNorm inputs would cost ``P`` products with ``R``; instead the norms are expanded
    into inner products (LayerNorm is affine once each input is centred and scaled by its own ``s``):
    with ``u = gamma * centre(E[v])``, ``w = gamma * centre(C[p])``, ``s^2 = ||centre(E[v] + C[p])||^2/d + eps``
    the scaled input is ``y = u + w + s beta`` and ``||P_perp y||^2 = ||y||^2 - ||R^T y||^2``.
    """
    d = E.shape[1]
    R = basis.R.to(dtype)
    g, b = gamma.to(dtype), beta.to(dtype)
    Cc = C.to(dtype) - C.to(dtype).mean(1, keepdim=True)
    w = g * Cc
    Rw, Rb = w @ R, b @ R
    cc = Cc.pow(2).sum(1)
    ww, bb, wb = w.pow(2).sum(1), b.pow(2).sum(), w @ b
    Rww, Rbb, Rwb = Rw.pow(2).sum(1), Rb.pow(2).sum(), Rw @ Rb
    out = []
    for start in range(0, E.shape[0], chunk):
        Ec = E[start:start + chunk].to(dtype)
        Ec = Ec - Ec.mean(1, keepdim=True)
        u = g * Ec
        Ru = u @ R
        s2 = (Ec.pow(2).sum(1, keepdim=True) + 2 * Ec @ Cc.T + cc) / d + eps
        s = s2.sqrt()
        full = (u.pow(2).sum(1, keepdim=True) + ww + s2 * bb + 2 * u @ w.T
                + 2 * s * (u @ b).unsqueeze(1) + 2 * s * wb)
        proj = (Ru.pow(2).sum(1, keepdim=True) + Rww + s2 * Rbb + 2 * Ru @ Rw.T
                + 2 * s * (Ru @ Rb).unsqueeze(1) + 2 * s * Rwb)
        out.append(((full - proj).clamp_min(0) / full.clamp_min(1e-30)).sqrt())
    return torch.cat(out)


class Architecture:
    """The pieces DAGER reads from a BERT (``BertForSequenceClassification``) or GPT-2 (``GPT2LMHeadModel``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.names = {id(p): n for n, p in model.named_parameters()}
        if hasattr(model, "bert"):
            self.kind = "bert"
            emb = model.bert.embeddings
            self.word, self.ln = emb.word_embeddings.weight, emb.LayerNorm
            self.position = emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]
            self.position_weight = emb.position_embeddings.weight
            self.layers = [(l.attention.self.query, l.attention.self.key, l.attention.self.value)
                           for l in model.bert.encoder.layer]
        elif hasattr(model, "transformer") and hasattr(model.transformer, "wte"):
            self.kind = "gpt2"
            t = model.transformer
            self.word, self.position, self.ln = t.wte.weight, t.wpe.weight, t.h[0].ln_1
            self.position_weight = t.wpe.weight
            self.layers = [(b.attn.c_attn,) for b in t.h]
        else:
            raise IncompatibleError("DAGER supports BERT- and GPT-2-family transformers (transformers' "
                                    "BertForSequenceClassification and GPT2LMHeadModel)")
        if len(self.layers) < 2:
            raise IncompatibleError("DAGER needs at least two attention layers (the second one checks sequences)")

    @property
    def width(self) -> int:
        return int(self.word.shape[1])

    def gradient(self, update: Update, layer: int) -> torch.Tensor:
        """``d x m`` matrix whose column space is the span of layer ``layer``'s attention inputs."""
        parts = []
        for module in self.layers[layer]:
            g = update.tensors[self.name(module.weight)].detach()
            # nn.Linear stores (out, in): its input span is the row space; GPT-2's Conv1D stores (in, out).
            parts.append(g if self.kind == "gpt2" else g.T)
        return torch.cat(parts, dim=1)

    def name(self, parameter: torch.Tensor) -> str:
        """The update's key of one of the model's parameters."""
        return self.names[id(parameter)]

    def span_tensors(self) -> list[str]:
        """The update's keys DAGER reads: the word and position embeddings and the first two layers' Q/K/V."""
        return [self.name(self.word), self.name(self.position_weight),
                *(self.name(m.weight) for layer in self.layers[:2] for m in layer)]

    def token_distances(self, basis: Basis, positions: int, vocab: torch.Tensor | None = None) -> torch.Tensor:
        """``(V, positions)`` span distances of every token (or of the ids ``vocab``) at every position
        (layer-1 inputs)."""
        word = self.word.detach() if vocab is None else self.word.detach()[vocab]
        with torch.no_grad():
            return layer_norm_distances(word, self.position[:positions].detach(),
                                        self.ln.weight.detach(), self.ln.bias.detach(), float(self.ln.eps), basis)

    def token_candidates(self, basis: Basis, threshold: float, vocab: list[int] | None = None) -> list[list[int]]:
        """Per position, the tokens (of ``vocab``, default all) whose layer-1 input lies within ``threshold``
        of the span, closest first; stops at the first position with none."""
        ids = None if vocab is None else torch.tensor(sorted(vocab), dtype=torch.long, device=self.word.device)
        positions = int(self.position.shape[0])
        out: list[list[int]] = []
        for first in range(0, positions, 32):
            dist = self.token_distances(basis, min(first + 32, positions), ids)[:, first:]
            for p in range(dist.shape[1]):
                ok = (dist[:, p] < threshold).nonzero().flatten()
                if ok.numel() == 0:
                    return out
                ok = ok[dist[ok, p].argsort()]
                out.append(ok.tolist() if ids is None else ids[ok].tolist())
        return out

    def second_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """Inputs ``(N, L, d)`` of the second layer's attention projections for full sequences ``ids``."""
        with torch.no_grad():
            if self.kind == "bert":
                bert = self.model.bert
                h = bert.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
                return bert.encoder.layer[0](h)
            t = self.model.transformer
            pos = torch.arange(ids.shape[1], device=ids.device)
            h = t.wte(ids) + t.wpe(pos)
            causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf"), device=ids.device).triu(1)
            return t.h[1].ln_1(_gpt2_block(t.h[0], h, causal))


def _gpt2_block(block: torch.nn.Module, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GPT-2 block ``h + attn(ln_1 h)``, then ``+ mlp(ln_2 .)``, with an additive attention ``bias``."""
    attn = block.attn
    n, length, d = h.shape
    heads = attn.num_heads
    q, k, v = attn.c_attn(block.ln_1(h)).split(d, dim=2)
    q, k, v = (x.view(n, length, heads, d // heads).transpose(1, 2) for x in (q, k, v))
    scores = q @ k.transpose(-1, -2) * getattr(attn, "scaling", (d // heads) ** -0.5) + bias
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, d)
    h = h + attn.c_proj(out)
    return h + block.mlp(block.ln_2(h))


class DecoderSteps:
    """Incremental first GPT-2 block: extends ``n`` cached prefixes by each of ``k`` tokens in one pass.

    With causal attention a prefix's states never change, so each step costs one token per candidate. A
    token's query, key and value at a position depend on the token and the position alone (the first layer
    sees only embeddings), so they are computed once per token and shared by every prefix; only the attention
    read-out, the output projection and the feed-forward block run per (prefix, token) pair, and the caches of
    the prefixes are never copied per candidate.
    """

    def __init__(self, arch: Architecture) -> None:
        t = arch.model.transformer
        self.t, self.block, self.next_ln = t, t.h[0], t.h[1].ln_1
        self.heads = self.block.attn.num_heads
        # GPT-2's "gelu_new" is the tanh approximation of GELU; torch's fused kernel computes the same function
        # several times faster than transformers' elementwise version.
        act = getattr(arch.model.config, "activation_function", "")
        self.act = ((lambda x: torch.nn.functional.gelu(x, approximate="tanh"))
                    if act in ("gelu_new", "gelu_pytorch_tanh") else self.block.mlp.act)

    def step(self, keys: torch.Tensor | None, values: torch.Tensor | None, tokens: torch.Tensor,
             position: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Extend every prefix by every token: ``keys``/``values`` ``(n, heads, p, hd)`` of ``n`` prefixes of
        length ``position`` (None at position 0, one empty prefix); ``tokens`` ``(k,)``.

        Returns the second layer's input ``(n * k, d)`` at ``position``, prefix-major (row ``i * k + j`` is
        prefix ``i`` extended by token ``j``), and each token's key and value ``(k, heads, 1, hd)``: a kept
        candidate's cache is its prefix's cache followed by its token's key and value.
        """
        with torch.no_grad():
            block, attn, mlp = self.block, self.block.attn, self.block.mlp
            h = self.t.wte(tokens) + self.t.wpe.weight[position]  # (k, d)
            k, d = h.shape
            hd = d // self.heads
            scale = getattr(attn, "scaling", hd ** -0.5)
            q, key, value = (x.view(k, self.heads, hd) for x in attn.c_attn(block.ln_1(h)).split(d, dim=-1))
            own = (q * key).sum(-1) * scale  # (k, heads)
            if keys is None:
                out = value.reshape(1, k, d)  # a token attends only to itself
            else:
                scores = torch.einsum("khd,nhpd->nkhp", q, keys) * scale
                scores = torch.cat([scores, own.unsqueeze(0).expand(scores.shape[0], -1, -1).unsqueeze(-1)], -1)
                weights = scores.softmax(-1)
                out = torch.einsum("nkhp,nhpd->nkhd", weights[..., :-1], values)
                out = (out + weights[..., -1:] * value).reshape(-1, k, d)
            h = (h + attn.c_proj(out)).reshape(-1, d)
            h = h + mlp.c_proj(self.act(mlp.c_fc(block.ln_2(h))))
            return self.next_ln(h), key.unsqueeze(2), value.unsqueeze(2)


class EncoderSteps:
    """First BERT layer when one position's token changes: the second layer's input at that position for every
    candidate token at once, the rest of each sequence fixed.

    Keys and values of the unchanged positions are shared by all candidates, and only the changed position's
    row goes through the output projection and the feed-forward block, so scoring ``k`` candidates costs
    ``k`` single-token passes instead of ``k`` full sequences.
    """

    def __init__(self, arch: Architecture) -> None:
        bert = arch.model.bert
        self.embeddings, self.layer = bert.embeddings, bert.encoder.layer[0]
        attn = self.layer.attention.self
        self.heads, self.head_size = attn.num_attention_heads, attn.attention_head_size
        self.scaling = getattr(attn, "scaling", self.head_size ** -0.5)

    def inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """First-layer inputs ``(N, L, d)`` (embeddings after their LayerNorm) of sequences ``ids``."""
        with torch.no_grad():
            return self.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))

    def kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer keys and values ``(..., H, hd)`` of first-layer inputs ``x`` ``(..., d)``. Each depends on
        one (token, position) pair only, so a search can compute them once per candidate and gather."""
        with torch.no_grad():
            attn = self.layer.attention.self
            shape = (*x.shape[:-1], self.heads, self.head_size)
            return attn.key(x).view(shape), attn.value(x).view(shape)

    def at(self, x: torch.Tensor, position: int, candidates: torch.Tensor,
           kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``x``: first-layer inputs ``(R, L, d)`` of ``R`` sequences (``kv``: their keys and values, when the
        caller has them); ``candidates``: first-layer inputs ``(k, d)`` of ``k`` tokens at ``position``. Returns
        the second layer's inputs ``(R, k, d)`` at ``position`` with each candidate put there."""
        with torch.no_grad():
            attn = self.layer.attention.self
            R, L, d = x.shape
            k, H, hd = candidates.shape[0], self.heads, self.head_size
            keys, values = kv if kv is not None else self.kv(x)
            q = attn.query(candidates).view(k, H, hd)
            kc, vc = self.kv(candidates)
            scores = torch.einsum("khd,rlhd->rkhl", q, keys) * self.scaling
            scores[..., position] = ((q * kc).sum(-1) * self.scaling).unsqueeze(0)
            weights = scores.softmax(-1)
            own = weights[..., position].unsqueeze(-1)  # (R, k, H, 1)
            weights = weights.clone()
            weights[..., position] = 0
            out = torch.einsum("rkhl,rlhd->rkhd", weights, values) + own * vc.unsqueeze(0)
            residual = candidates.unsqueeze(0).expand(R, k, d)
            h = self.layer.attention.output(out.reshape(R, k, d), residual)
            return self.layer.output(self.layer.intermediate(h), h)

    def at_row(self, x: torch.Tensor, position: int, candidates: torch.Tensor, row: int,
               kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Like :meth:`at`, but the second layer's inputs ``(R, k, d)`` at another position ``row``: its query and
        residual stay, the key and value at ``position`` change with each candidate."""
        if row == position:
            return self.at(x, position, candidates, kv)
        with torch.no_grad():
            attn = self.layer.attention.self
            R, L, d = x.shape
            k, H, hd = candidates.shape[0], self.heads, self.head_size
            keys, values = kv if kv is not None else self.kv(x)
            q = attn.query(x[:, row]).view(R, H, hd)
            kc, vc = self.kv(candidates)
            base = torch.einsum("rhd,rlhd->rhl", q, keys) * self.scaling
            scores = base.unsqueeze(1).expand(R, k, H, L).clone()
            scores[..., position] = torch.einsum("rhd,khd->rkh", q, kc) * self.scaling
            weights = scores.softmax(-1)
            own = weights[..., position].unsqueeze(-1)  # (R, k, H, 1)
            weights = weights.clone()
            weights[..., position] = 0
            out = torch.einsum("rkhl,rlhd->rkhd", weights, values) + own * vc.unsqueeze(0)
            residual = x[:, row].unsqueeze(1).expand(R, k, d)
            h = self.layer.attention.output(out.reshape(R, k, d), residual)
            return self.layer.output(self.layer.intermediate(h), h)

