"""SwiftFormer efficient additive attention.

Shaker, Maaz, Rasheed, Khan, Yang, Khan, "SwiftFormer: Efficient Additive Attention for Transformer-based
Real-time Mobile Vision Applications", ICCV 2023, https://arxiv.org/abs/2303.15446.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class EfficientAdditiveAttention(nn.Module):
    """Additive attention with one global query: no key-value interaction, linear in N.

    SwiftFormer (ICCV 2023), https://arxiv.org/abs/2303.15446, sec. 3.2; follows timm's
    ``EfficientAdditiveAttention`` (``timm.models.swiftformer``, from Amshaker/SwiftFormer) with
    ``token_dim = channels`` as SwiftFormer builds it. q and k are linear projections (with bias), each
    l2-normalised over channels; the per-token score ``q w_g / sqrt(token_dim)`` is l2-normalised over the
    N tokens (so the scale has no effect, as in the reference); the global query is the score-weighted sum
    of q; the output is ``final(proj(global_q * k) + q)`` (both linear with bias). ``num_heads`` widens q and
    k to ``num_heads * channels`` as the reference does (default 1, as SwiftFormer).
    Cost: N (2 C hC + hC + (hC)^2 + hC C) MACs per image with h = num_heads; N C (4C + 1) for h = 1.
    """

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be positive, got {num_heads}")
        inner = channels * num_heads
        self.scale = channels ** -0.5
        self.to_query = nn.Linear(channels, inner)
        self.to_key = nn.Linear(channels, inner)
        self.w_g = nn.Parameter(torch.randn(inner, 1))
        self.proj = nn.Linear(inner, inner)
        self.final = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q = F.normalize(self.to_query(x), dim=-1)  # (B, N, hC)
        k = F.normalize(self.to_key(x), dim=-1)  # (B, N, hC)
        score = F.normalize(q @ self.w_g * self.scale, dim=1)  # (B, N, 1), unit norm over the tokens
        global_q = (score * q).sum(dim=1, keepdim=True)  # (B, 1, hC)
        out = self.final(self.proj(global_q * k) + q)  # (B, N, C)
        return out.transpose(1, 2).reshape(b, c, h, w)
