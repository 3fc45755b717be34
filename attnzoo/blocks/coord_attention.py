"""Coordinate attention."""

from __future__ import annotations

import torch
import torch.nn as nn


class CoordinateAttention(nn.Module):
    """Coordinate Attention.

    Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021,
    https://arxiv.org/abs/2103.02907. The map is average-pooled along W (giving a column of H values per
    channel) and along H (a row of W values); both strips are concatenated, go through a shared 1x1
    convolution C -> mip, BatchNorm and h-swish, are split again, and each goes through its own 1x1
    convolution mip -> C and a sigmoid; the output is x times both gates. As the authors' code
    (Andrew-Qibin/CoordAttention, coordatt.py): reduction 32 with mip = max(8, C // 32), convolutions with
    bias. (timm's CoordAttn defaults differ: no bias, mip from C/16 * 2/3 rounded to 8.)
    Cost: 2 B C mip (H + W) MACs per forward.
    """

    def __init__(self, channels: int, reduction: int = 32, min_channels: int = 8):
        super().__init__()
        if channels < 1 or reduction < 1 or min_channels < 1:
            raise ValueError("channels, reduction and min_channels must be positive")
        mip = max(min_channels, channels // reduction)
        self.mip = mip
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, channels, 1)
        self.conv_w = nn.Conv2d(mip, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        strip_h = x.mean(3, keepdim=True)  # (B, C, H, 1)
        strip_w = x.mean(2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = self.act(self.bn1(self.conv1(torch.cat([strip_h, strip_w], dim=2))))  # (B, mip, H + W, 1)
        y_h, y_w = torch.split(y, [h, w], dim=2)
        gate_h = torch.sigmoid(self.conv_h(y_h))  # (B, C, H, 1)
        gate_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # (B, C, 1, W)
        return x * gate_h * gate_w
