"""Efficient Local Attention (ELA)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class EfficientLocalAttention(nn.Module):
    """Efficient Local Attention, as timm's ``EfficientLocalAttn``.

    Xu & Wan, "ELA: Efficient Local Attention for Deep Convolutional Neural Networks", arXiv 2024,
    https://arxiv.org/abs/2403.01123. Strip pooling as in coordinate attention (the mean over the width gives a
    column per channel, the mean over the height a row), but no channel reduction: each strip goes through a
    depth-wise 1-D convolution (kernel 7, no bias), GroupNorm and an activation, then a sigmoid; the two gates
    multiply the input. Follows timm 1.0's ``EfficientLocalAttn`` defaults, as the zoo's issue asks: a
    separate convolution and GroupNorm for each direction, GroupNorm with one group, SiLU before the sigmoid.
    The paper's code listing (no official repository) instead shares one depth-wise convolution and one
    GroupNorm (16 groups) between the two directions and applies the sigmoid directly after the norm.
    Cost: k C (H + W) MACs per image.
    """

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        pad = kernel_size // 2
        self.conv_h = nn.Conv2d(channels, channels, (kernel_size, 1), padding=(pad, 0), groups=channels, bias=False)
        self.conv_w = nn.Conv2d(channels, channels, (1, kernel_size), padding=(0, pad), groups=channels, bias=False)
        self.norm_h = nn.GroupNorm(1, channels)
        self.norm_w = nn.GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        column = x.mean(3, keepdim=True)  # (B, C, H, 1)
        row = x.mean(2, keepdim=True)  # (B, C, 1, W)
        gate_h = torch.sigmoid(F.silu(self.norm_h(self.conv_h(column))))  # (B, C, H, 1)
        gate_w = torch.sigmoid(F.silu(self.norm_w(self.conv_w(row))))  # (B, C, 1, W)
        return x * gate_h * gate_w
