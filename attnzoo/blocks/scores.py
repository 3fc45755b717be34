"""Classic attention scores as self-attention over the pixels of a feature map (token layout, B x N x C).

The encoder-decoder scores of Luong et al. (dot, general, location) and Bahdanau et al. (additive), turned
into self-attention: every pixel is a query, and the keys and values are the pixels themselves
(q = k = v = x). The output of each block is the context vector of every pixel, c_i = sum_j a_ij x_j, with
the weights a_ij = softmax_j(score(x_i, x_j)). Luong's decoder-side "attentional hidden state"
tanh(W_c [c_t; h_t]) belongs to the translation model, not to the score, and is left out.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.functional import dot_product_attention


def _weighted_sum(scores: torch.Tensor, values: torch.Tensor, return_attention: bool):
    weights = torch.softmax(scores, dim=-1)  # (B, N, N), over the keys
    out = weights @ values  # (B, N, C)
    return (out, weights) if return_attention else out


class DotProductAttention(nn.Module):
    """Luong's dot score over the pixels, unscaled: a_ij = softmax_j(x_i . x_j), c_i = sum_j a_ij x_j.

    Luong, Pham, Manning, "Effective Approaches to Attention-based Neural Machine Translation", EMNLP 2015,
    https://arxiv.org/abs/1508.04025 (eq. 8, "dot"). No parameters and no 1/sqrt(C) scaling (the scaled
    form is the ``sdpa`` card): with many channels the softmax is sharp, as the paper's score is.
    Cost: 2 N^2 C MACs per image.
    """

    def __init__(self, fused: bool = True):
        super().__init__()
        self.fused = fused

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, N, C)
        out, weights = dot_product_attention(x, x, x, scale=1.0, fused=self.fused, need_weights=return_attention)
        return (out, weights) if return_attention else out


class GeneralAttention(nn.Module):
    """Luong's general (bilinear) score over the pixels: a_ij = softmax_j(x_i^T W_a x_j), c_i = sum_j a_ij x_j.

    Luong, Pham, Manning, EMNLP 2015, https://arxiv.org/abs/1508.04025 (eq. 8, "general"). W_a is a C x C
    matrix without bias (``self.weight``, applied to the keys: k_j = W_a x_j); no scaling, as the paper.
    Cost: N C^2 + 2 N^2 C MACs per image.
    """

    def __init__(self, dim: int, fused: bool = True):
        super().__init__()
        if dim < 1:
            raise ValueError(f"channels must be positive, got {dim}")
        self.fused = fused
        self.weight = nn.Linear(dim, dim, bias=False)  # W_a

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, N, C)
        keys = self.weight(x)  # (B, N, C): W_a x_j
        out, weights = dot_product_attention(x, keys, x, scale=1.0, fused=self.fused, need_weights=return_attention)
        return (out, weights) if return_attention else out


class AdditiveAttention(nn.Module):
    """Bahdanau's additive score over the pixels: e_ij = v^T tanh(W x_i + U x_j), c_i = sum_j softmax_j(e_ij) x_j.

    Bahdanau, Cho, Bengio, "Neural Machine Translation by Jointly Learning to Align and Translate",
    ICLR 2015, https://arxiv.org/abs/1409.0473 (appendix A.1.2: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)).
    W (query side), U (key side): C -> d_a without bias; v: d_a -> 1. The paper uses d_a = 1000 hidden units
    for sentences; over pixels the tanh term is an (N, N, d_a) tensor, so memory grows as B N^2 d_a (about
    270 MB of activations for B = 2, a 32 x 32 map and d_a = 32, kept for the backward pass). attnzoo
    therefore defaults to a modest ``attn_dim`` = 16; raise it with ``--set attn_dim=...``.
    Cost: 2 N C d_a + N^2 d_a + N^2 C MACs per image (plus N^2 d_a additions and tanh).
    """

    def __init__(self, dim: int, attn_dim: int = 16):
        super().__init__()
        if dim < 1 or attn_dim < 1:
            raise ValueError(f"channels ({dim}) and attn_dim ({attn_dim}) must be positive")
        self.query = nn.Linear(dim, attn_dim, bias=False)  # W
        self.key = nn.Linear(dim, attn_dim, bias=False)  # U
        self.score = nn.Linear(attn_dim, 1, bias=False)  # v

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, N, C)
        q = self.query(x)  # (B, N, d_a)
        k = self.key(x)  # (B, N, d_a)
        hidden = torch.tanh(q[:, :, None, :] + k[:, None, :, :])  # (B, N, N, d_a)
        scores = self.score(hidden).squeeze(-1)  # (B, N, N)
        return _weighted_sum(scores, x, return_attention)


class LocationAttention(nn.Module):
    """Luong's location-based score over the pixels: a_i = softmax(W_a x_i) in R^N, c_i = sum_j a_ij x_j.

    Luong, Pham, Manning, EMNLP 2015, https://arxiv.org/abs/1508.04025 (eq. 9, "location"). The weights
    come from the query alone: W_a (no bias) maps each pixel's C features to one score per position of
    the map, so the block learns *where* each pixel looks, never comparing contents. The key content enters
    only through the values. Since W_a has one row per position, the number of pixels ``num_tokens`` (N)
    is fixed when the block is built (the card passes ``"N"``); another N raises ValueError.
    Cost: 2 N^2 C MACs per image (N^2 C for the scores, N^2 C for the weighted sum); N C parameters.
    """

    def __init__(self, dim: int, num_tokens: int):
        super().__init__()
        if dim < 1 or num_tokens < 1:
            raise ValueError(f"channels ({dim}) and num_tokens ({num_tokens}) must be positive")
        self.num_tokens = num_tokens
        self.weight = nn.Linear(dim, num_tokens, bias=False)  # W_a

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, N, C)
        if x.shape[1] != self.num_tokens:
            raise ValueError(f"location attention was built for {self.num_tokens} positions, got {x.shape[1]}")
        scores = self.weight(x)  # (B, N, N): one score per source position, from the query alone
        return _weighted_sum(scores, x, return_attention)
