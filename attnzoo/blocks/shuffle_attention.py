"""SA-Net: shuffle attention."""

from __future__ import annotations

import torch
import torch.nn as nn


class ShuffleAttention(nn.Module):
    """Shuffle Attention.

    Zhang & Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", ICASSP 2021,
    https://arxiv.org/abs/2102.00240. The channels are split into G groups, each group in two halves of
    C/(2G) channels: the channel half is gated by sigmoid(w_c * avgpool + b_c), the spatial half by
    sigmoid(w_s * GroupNorm(x) + b_s) (GroupNorm with one channel per group); the halves are concatenated
    and the channels shuffled with 2 groups. w start at 0 and b at 1 (authors' code, wofmanaf/SA-Net).
    G = 64 as the paper (the well-known copy in External-Attention-pytorch defaults to G = 8). C must be a
    multiple of 2G; on maps narrower than 128 channels G is lowered to C // 2 (so 64 channels take G = 32)
    rather than refused, which leaves the paper's G = 64 wherever the paper uses it (C >= 128).
    Cost: 0 MACs (per-channel affine maps, norms, pooling and gates are not multiply-adds).
    """

    def __init__(self, channels: int, groups: int = 64):
        super().__init__()
        if channels < 2 or groups < 1:
            raise ValueError(f"channels must be at least 2 and groups positive, got {channels}, {groups}")
        groups = min(groups, channels // 2)
        if channels % (2 * groups):
            raise ValueError(f"channels ({channels}) must be a multiple of 2 * groups ({2 * groups})")
        self.groups = groups
        half = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b * self.groups, c // self.groups, h, w)  # (B G, C/G, H, W)
        x_c, x_s = grouped.chunk(2, dim=1)  # (B G, C/2G, H, W) each
        gate_c = torch.sigmoid(self.cweight * x_c.mean((2, 3), keepdim=True) + self.cbias)
        gate_s = torch.sigmoid(self.sweight * self.gn(x_s) + self.sbias)
        out = torch.cat([x_c * gate_c, x_s * gate_s], dim=1).reshape(b, 2, c // 2, h, w)
        return out.transpose(1, 2).reshape(b, c, h, w)  # channel shuffle with 2 groups
