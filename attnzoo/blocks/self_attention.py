"""Dot-product self-attention over the pixels of a feature map (token layout, B x N x C).

Three blocks of the user's articles: the parameter-free scaled dot-product attention and the Transformer
multi-head attention of the first article, and the ViT attention of the third.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.functional import dot_product_attention

#: The fused parameter-free attention of a token view of a feature map runs over the batch in chunks of
#: about this many bytes of input (see ScaledDotProductSelfAttention.forward).
CHUNK_BYTES = 8 * 1024 * 1024


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
        if self.fused and not return_attention and x.dim() == 3 and x.stride(-1) != 1:
            return self._fused_strided(x)
        out, weights = dot_product_attention(x, x, x, fused=self.fused, need_weights=return_attention)
        return (out, weights) if return_attention else out

    @staticmethod
    def _fused_strided(x: torch.Tensor) -> torch.Tensor:
        """The fused path for tokens whose channels are not contiguous (a view of a B, C, H, W map).

        The fused kernels need stride 1 along C, so the input must be copied; copying a few images at a
        time into an output laid out as the input (``empty_like`` keeps its strides, so turning the tokens
        back into a feature map is a view, not another copy) keeps the peak to the output plus one chunk,
        where copying all of it at once would hold a copy of the input beside the output. Same kernel,
        same result.
        """
        b, n, c = x.shape
        out = torch.empty_like(x)  # (B, N, C), strides of x
        rows = max(1, CHUNK_BYTES // max(1, n * c * x.element_size()))
        for start in range(0, b, rows):
            part = x[start:start + rows]  # copied to (rows, N, C) contiguous inside
            out[start:start + rows] = dot_product_attention(part, part, part)[0]
        return out


class MultiHeadAttention(nn.Module):
    """The Transformer's multi-head self-attention as the first article writes it.

    Vaswani et al., "Attention Is All You Need", NeurIPS 2017, https://arxiv.org/abs/1706.03762 (sec. 3.2.2).
    Bias-free q, k, v and output projections, d_k = d_v = dim / num_heads, dropout on the projected output
    (``dropout``), then the residual and LayerNorm (eps 1e-6), as the article's code (and the Transformer's
    post-norm sub-layer). ``attn_dropout`` drops the attention weights in training (the fused path passes
    it to SDPA as ``dropout_p``, whose random mask differs from ``F.dropout``'s). Its default, 0, is the first
    article's code as printed: its ScaledDotProductAttention defaults to ``attn_dropout=0.0`` and its
    MultiHeadAttention does not pass one. The repository that code comes from
    (jadore801120/attention-is-all-you-need-pytorch) defaults to 0.1: ``attn_dropout=0.1`` reproduces it. On
    the CPU, a non-zero ``attn_dropout`` makes SDPA fall back from its fused kernel to the N x N path.
    Cost: 4 N C^2 + 2 N^2 C MACs per image.
    """

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.1, attn_dropout: float = 0.0,
                 fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.fused = fused
        if not 0.0 <= attn_dropout <= 1.0:
            raise ValueError(f"attn_dropout must lie in [0, 1], got {attn_dropout}")
        self.attn_dropout = attn_dropout
        self.w_qs = nn.Linear(dim, dim, bias=False)
        self.w_ks = nn.Linear(dim, dim, bias=False)
        self.w_vs = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        # One (B*N, C) x (C, 3C) product instead of three (C, C) ones: the three weights stay separate
        # parameters (the article's layout); concatenating them costs 3 C^2 copies per call, and every
        # output element is the same dot product as with three Linear layers.
        weight = torch.cat([self.w_qs.weight, self.w_ks.weight, self.w_vs.weight])  # (3C, C)
        qkv = F.linear(x, weight).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        drop = self.attn_dropout if self.training else 0.0  # on the attention weights
        out, weights = dot_product_attention(q, k, v, dropout_p=drop, fused=self.fused,
                                             need_weights=return_attention)
        out = out.transpose(1, 2).reshape(b, n, c)  # (B, N, heads * head_dim)
        out = self.layer_norm(self.dropout(self.fc(out)) + x)
        return (out, weights) if return_attention else out


class ViTAttention(nn.Module):
    """ViT's multi-head self-attention: one fused qkv projection, then an output projection.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021, https://arxiv.org/abs/2010.11929.
    Defaults follow the third article's code: no bias on qkv nor on the output projection, scale
    1/sqrt(head_dim), no residual or norm (those belong to the encoder block). The original ViT (and timm's
    ``VisionTransformer``, whose blocks pass ``qkv_bias=True``) has a bias on both projections: pass
    ``qkv_bias=True, proj_bias=True`` for that.
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
