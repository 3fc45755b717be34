"""Cross-covariance attention (XCiT): attention across channels instead of across tokens."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.functional import dot_product_attention
from attnzoo.blocks.self_attention import _check_heads


class CrossCovarianceAttention(nn.Module):
    """XCA: per head, a head_dim x head_dim attention map from the cross-covariance of keys and queries.

    El-Nouby, Touvron, Caron, Bojanowski, Douze, Joulin, Laptev, Neverova, Synnaeve, Verbeek, Jegou,
    "XCiT: Cross-Covariance Image Transformers", NeurIPS 2021, https://arxiv.org/abs/2106.09681 (sec. 3.2).
    q, k, v from one linear layer, with a bias by default: the bare ``XCA`` class of the official code
    (facebookresearch/xcit ``xcit.py``) and of timm defaults to ``qkv_bias=False``, but every XCiT model of
    both passes ``qkv_bias=True``, so attnzoo follows the models (``qkv_bias=False`` gives the bare class).
    q and k are l2-normalised along the tokens (each channel of a head becomes a unit vector over the N
    tokens), so every entry of the cross-covariance lies in [-1, 1]; attention weights softmax(q_hat k_hat^T * tau) over the channels of a head, applied to v;
    output projection with bias. The paper writes the temperature as a divisor (softmax(K^T Q / tau)); the
    official code (facebookresearch/xcit, timm's ``XCA``) multiplies by a learnable per-head parameter
    initialised to 1, which attnzoo follows (same family of functions, the reference's parameterisation).
    Cost: 4 N C^2 + 2 N C^2 / heads MACs per image: linear in N.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.fused = fused
        self.attn_drop = attn_drop
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)  # each (B, heads, head_dim, N): channels are the "tokens" here
        q = F.normalize(q, dim=-1) * self.temperature  # unit vectors over N, times tau per head
        k = F.normalize(k, dim=-1)
        drop = self.attn_drop if self.training else 0.0
        out, weights = dot_product_attention(q, k, v, scale=1.0, dropout_p=drop, fused=self.fused,
                                             need_weights=return_attention)  # (B, heads, head_dim, N)
        out = self.proj_drop(self.proj(out.permute(0, 3, 1, 2).reshape(b, n, c)))  # (B, N, C)
        return (out, weights) if return_attention else out
