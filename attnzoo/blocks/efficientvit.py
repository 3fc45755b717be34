"""EfficientViT lightweight multi-scale linear attention (LiteMLA).

Cai, Li, Gan, Han, "EfficientViT: Lightweight Multi-Scale Attention for High-Resolution Dense Prediction",
ICCV 2023, https://arxiv.org/abs/2205.14756.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class LiteMLA(nn.Module):
    """ReLU linear attention over all pixels, on q, k, v and on multi-scale aggregated copies of them.

    EfficientViT (ICCV 2023), https://arxiv.org/abs/2205.14756, sec. 3.1; follows timm's ``LiteMLA``
    (``timm.models.efficientvit_mit``, as EfficientViT-B uses it): a 1x1 convolution (no bias, no norm) gives
    q, k, v for ``heads = channels // head_dim`` heads of width ``head_dim = 8``; for each aggregation kernel
    in ``scales`` (default (5,)) a depthwise k x k convolution followed by a grouped 1x1 convolution (one
    group per head and per q/k/v) makes another set of heads. Every head computes
    ``out = relu(q) (relu(k)^T [v, 1])`` and divides by the last column (the normaliser
    ``relu(q) sum_j relu(k_j)``, plus ``eps`` = 1e-5): linear in N, no softmax. The heads' outputs are
    concatenated and projected by a 1x1 convolution followed by BatchNorm (no bias), as timm. The attention
    arithmetic runs in float32 whatever the input dtype, as in timm.
    Channels not a multiple of ``head_dim`` keep ``channels // head_dim`` heads (timm's rounding); fewer
    channels than ``head_dim`` are refused.
    Cost: with T = (C // head_dim) * head_dim, S = len(scales):
    N (3 T C + sum_s 3 T (s^2 + head_dim) + 2 (C // head_dim)(1 + S) head_dim (head_dim + 1) + (1 + S) T C)
    MACs per image; the card's formula is the one for the default single 5 x 5 scale (as EfficientViT-B):
    N (3TC + 75T + 3T head_dim + 4 (C // head_dim) head_dim (head_dim + 1) + 2TC): linear in N.
    """

    def __init__(self, channels: int, head_dim: int = 8, scales: Sequence[int] = (5,), eps: float = 1e-5):
        super().__init__()
        if head_dim < 1 or channels < head_dim:
            raise ValueError(f"channels ({channels}) must be at least head_dim ({head_dim})")
        scales = tuple(int(s) for s in scales)
        if any(s < 1 or s % 2 == 0 for s in scales):
            raise ValueError(f"scales must be odd positive kernel sizes, got {scales}")
        self.head_dim = head_dim
        self.heads = channels // head_dim
        self.eps = eps
        total = self.heads * head_dim
        self.qkv = nn.Conv2d(channels, 3 * total, 1, bias=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
                          nn.Conv2d(3 * total, 3 * total, 1, groups=3 * self.heads, bias=False))
            for s in scales)
        self.proj = nn.Conv2d(total * (1 + len(scales)), channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = self.qkv(x)  # (B, 3T, H, W), per head [q, k, v] of head_dim channels each
        qkv = torch.cat([qkv] + [agg(qkv) for agg in self.aggreg], dim=1)  # (B, 3T(1+S), H, W)
        qkv = qkv.reshape(b, -1, 3 * self.head_dim, h * w).transpose(-1, -2)  # (B, heads(1+S), N, 3 head_dim)
        q, k, v = qkv.float().chunk(3, dim=-1)  # each (B, heads(1+S), N, head_dim)
        q, k = F.relu(q), F.relu(k)
        v = F.pad(v, (0, 1), value=1.0)  # (B, heads(1+S), N, head_dim + 1): the last column gives the normaliser
        kv = k.transpose(-1, -2) @ v  # (B, heads(1+S), head_dim, head_dim + 1)
        out = q @ kv  # (B, heads(1+S), N, head_dim + 1)
        out = (out[..., :-1] / (out[..., -1:] + self.eps)).to(x.dtype)
        out = out.transpose(-1, -2).reshape(b, -1, h, w)  # (B, T(1+S), H, W)
        return self.norm(self.proj(out))
