"""A tiny Vision Transformer for small images (ViT-Ti of Touvron et al. at patch 4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention written out (softmax(QK^T / sqrt(d)) V): torch's fused kernels have no
    double backward, which gradient matching needs."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer encoder block: ``x + MHSA(LN(x))``, then ``x + MLP(LN(x))`` (GELU, ratio 4)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al., ICLR 2021): patch embedding, class token, learned positions,
    ``depth`` pre-norm blocks, final LayerNorm, linear head on the class token.

    ViT-Tiny (Touvron et al., DeiT, ICML 2021) is ``dim=192, depth=12, heads=3``; on 32x32 inputs we use
    4x4 patches (64 tokens), the usual choice for CIFAR-sized images. No dropout, so the model is
    deterministic in train and eval mode alike.
    """

    def __init__(self, num_classes: int = 10, channels: int = 3, size: int = 32, patch: int = 4, dim: int = 192,
                 depth: int = 12, heads: int = 3) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"the image size {size} must be a multiple of the patch size {patch}")
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        tokens = (size // patch) ** 2
        self.embed = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])
