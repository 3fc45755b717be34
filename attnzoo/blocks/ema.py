"""Efficient Multi-scale Attention (EMA)."""

from __future__ import annotations

import torch
import torch.nn as nn


class EfficientMultiScaleAttention(nn.Module):
    """Efficient Multi-scale Attention.

    Ouyang et al., "Efficient Multi-Scale Attention Module with Cross-Spatial Learning", ICASSP 2023,
    https://arxiv.org/abs/2305.13563. Follows the official code (YOLOonMe/EMA-attention-module): the channels
    are split into ``groups`` sub-features (the code's ``factor``, 32 by default) folded into the batch. Per group
    of C/G channels: a 1x1 branch (coordinate-attention style: pooled row and column strips through one shared
    1x1 convolution with bias, sigmoid gates, then GroupNorm with one group per channel) and a 3x3 branch (a
    3x3 convolution with bias). Cross-spatial learning: each branch's globally pooled, softmaxed channel
    descriptor (1 x C/G) is multiplied with the other branch's (C/G x HW) map; the two (1 x HW) maps are summed
    and a sigmoid of the sum weights every channel of the group at each pixel.
    Cost: C (C/G) (H + W + 9 H W) + 2 C H W MACs per image.
    """

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        if channels < 1 or groups < 1:
            raise ValueError("channels and groups must be positive")
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.groups = groups
        width = channels // groups
        self.conv1x1 = nn.Conv2d(width, width, 1)
        self.conv3x3 = nn.Conv2d(width, width, 3, padding=1)
        self.gn = nn.GroupNorm(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b * self.groups, c // self.groups, h, w)  # (B*G, C/G, H, W)
        strips = torch.cat([g.mean(3, keepdim=True), g.mean(2, keepdim=True).transpose(2, 3)], dim=2)
        strips = self.conv1x1(strips)  # (B*G, C/G, H+W, 1)
        gate_h, gate_w = strips.split([h, w], dim=2)
        x1 = self.gn(g * torch.sigmoid(gate_h) * torch.sigmoid(gate_w.transpose(2, 3)))  # (B*G, C/G, H, W)
        x2 = self.conv3x3(g)  # (B*G, C/G, H, W)
        d1 = x1.mean((2, 3)).softmax(-1).unsqueeze(1)  # (B*G, 1, C/G)
        d2 = x2.mean((2, 3)).softmax(-1).unsqueeze(1)
        weights = torch.matmul(d1, x2.flatten(2)) + torch.matmul(d2, x1.flatten(2))  # (B*G, 1, H*W)
        out = g * torch.sigmoid(weights).view(b * self.groups, 1, h, w)
        return out.reshape(b, c, h, w)
