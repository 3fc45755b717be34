"""Lambda layer (LambdaNetworks).

Bello, "LambdaNetworks: Modeling Long-Range Interactions Without Attention", ICLR 2021,
https://arxiv.org/abs/2102.08602.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LambdaLayer(nn.Module):
    """Content and position lambdas: linear functions summarising the context, applied to each query.

    LambdaNetworks (ICLR 2021), https://arxiv.org/abs/2102.08602, sec. 3-4; follows timm's ``LambdaLayer``
    (``timm.layers.lambda_layer``) with its defaults: 4 query heads, key depth k = 16, intra-depth u = 1,
    value depth v = C / heads, one 1x1 convolution (no bias) for q, k and v, BatchNorm on q and v, keys
    softmax-normalised over positions. The content lambda ``softmax(K)^T V`` (k x v) is shared by all
    positions; the position lambdas come from a lambda convolution (a 3-D convolution of r x r x 1 over
    (H, W, v) with k output channels and bias), so the layer is linear in N and takes any map size. r = 9 is
    timm's default; the paper's LambdaResNets use a 23 x 23 scope (``r=23``: 6.5x the MACs of the lambda
    convolution). The output of head h at a position is ``q_h (lambda_content + lambda_position)``.
    Cost: N (C (heads k + k + v) + k v + 2 heads k v + k r^2 v) MACs per image, v = C / heads: linear in N.
    """

    def __init__(self, channels: int, num_heads: int = 4, dim_head: int = 16, r: int = 9, qkv_bias: bool = False):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if dim_head < 1:
            raise ValueError(f"dim_head must be positive, got {dim_head}")
        if r < 1 or r % 2 == 0:
            raise ValueError(f"r (the lambda convolution's size) must be odd and positive, got {r}")
        self.num_heads, self.dim_k, self.dim_v = num_heads, dim_head, channels // num_heads
        self.qkv = nn.Conv2d(channels, num_heads * dim_head + dim_head + self.dim_v, 1, bias=qkv_bias)
        self.norm_q = nn.BatchNorm2d(num_heads * dim_head)
        self.norm_v = nn.BatchNorm2d(self.dim_v)
        self.conv_lambda = nn.Conv3d(1, dim_head, (r, r, 1), padding=(r // 2, r // 2, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, heads, dk, dv = h * w, self.num_heads, self.dim_k, self.dim_v
        q, k, v = self.qkv(x).split([heads * dk, dk, dv], dim=1)
        q = self.norm_q(q).reshape(b, heads, dk, n).transpose(-1, -2)  # (B, heads, N, k)
        v = self.norm_v(v).reshape(b, dv, n).transpose(-1, -2)  # (B, N, v)
        k = F.softmax(k.reshape(b, dk, n), dim=-1)  # (B, k, N), normalised over positions
        content = k @ v  # (B, k, v): one lambda for every position
        out = q @ content.unsqueeze(1)  # (B, heads, N, v)
        position = self.conv_lambda(v.reshape(b, 1, h, w, dv))  # (B, k, H, W, v): one lambda per position
        position = position.reshape(b, 1, dk, n, dv).transpose(2, 3)  # (B, 1, N, k, v)
        out = out + (q.unsqueeze(-2) @ position).squeeze(-2)  # (B, heads, N, v)
        return out.transpose(-1, -2).reshape(b, c, h, w)
