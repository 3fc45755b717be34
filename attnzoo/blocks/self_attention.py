"""Dot-product self-attention over the pixels of a feature map (token layout, B x N x C).

Three blocks of the user's articles: the parameter-free scaled dot-product attention and the Transformer
multi-head attention of the first article, and the ViT attention of the third.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.functional import dot_product_attention


def _check_heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"channels ({dim}) must be divisible by num_heads ({num_heads})")
    return dim // num_heads


class ScaledDotProductSelfAttention(nn.Module):
    """Scaled dot-product attention with q = k = v = x: softmax(x x^T / sqrt(C)) x. No parameters.

    Vaswani et al., "Attention Is All You Need", NeurIPS 2017, https://arxiv.org/abs/1706.03762 (eq. 1).
    The first article's demonstration passes ``temperature=query.size(2)``, the sequence length; attnzoo
    scales by sqrt(C) as the paper does. Cost: 2 N^2 C MACs per image.
    """

    def __init__(self, fused: bool = True):
        super().__init__()
        self.fused = fused

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, N, C)
        out, weights = dot_product_attention(x, x, x, fused=self.fused, need_weights=return_attention)
        return (out, weights) if return_attention else out


class MultiHeadAttention(nn.Module):
    """The Transformer's multi-head self-attention as the first article writes it.

    Vaswani et al., "Attention Is All You Need", NeurIPS 2017, https://arxiv.org/abs/1706.03762 (sec. 3.2.2).
    Bias-free q, k, v and output projections, d_k = d_v = dim / num_heads, dropout on the projected output,
    then the residual and LayerNorm (eps 1e-6), as the article's code (and the Transformer's post-norm
    sub-layer). Cost: 4 N C^2 + 2 N^2 C MACs per image.
    """

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.1, fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.fused = fused
        self.w_qs = nn.Linear(dim, dim, bias=False)
        self.w_ks = nn.Linear(dim, dim, bias=False)
        self.w_vs = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, N, head_dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        q, k, v = self._heads(self.w_qs(x)), self._heads(self.w_ks(x)), self._heads(self.w_vs(x))
        out, weights = dot_product_attention(q, k, v, fused=self.fused, need_weights=return_attention)
        out = out.transpose(1, 2).reshape(b, n, c)  # (B, N, heads * head_dim)
        out = self.layer_norm(self.dropout(self.fc(out)) + x)
        return (out, weights) if return_attention else out


class ViTAttention(nn.Module):
    """ViT's multi-head self-attention: one fused qkv projection, then an output projection.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, https://arxiv.org/abs/2010.11929.
    Defaults follow the third article's code: no bias on qkv nor on the output projection, scale
    1/sqrt(head_dim), no residual or norm (those belong to the encoder block). The original ViT and
    timm's ``Attention`` put a bias on the output projection: pass ``proj_bias=True`` for that.
    Cost: 4 N C^2 + 2 N^2 C MACs per image.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, proj_bias: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.fused = fused
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        drop = self.attn_drop if self.training else 0.0
        out, weights = dot_product_attention(q, k, v, dropout_p=drop, fused=self.fused,
                                             need_weights=return_attention)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
        return (out, weights) if return_attention else out
