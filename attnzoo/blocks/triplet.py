"""Triplet attention: three rotated spatial gates."""

from __future__ import annotations

import torch
import torch.nn as nn


class _ZPoolGate(nn.Module):
    """Max and mean over dimension 1, a k x k convolution 2 -> 1 (no bias), BatchNorm, sigmoid, scale."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)  # (B, 2, ., .)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class TripletAttention(nn.Module):
    """Triplet Attention.

    Misra et al., "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021,
    https://arxiv.org/abs/2010.03045. Three branches, each a Z-pool (max and mean) over one dimension, a
    7x7 convolution 2 -> 1 without bias, BatchNorm (eps 1e-5, momentum 0.01 as the authors' code,
    landskape-ai/triplet-attention) and a sigmoid gate: over H (gating the C x W plane), over W (the
    H x C plane), and over C (the H x W plane). The output is the mean of the three branches;
    ``no_spatial=True`` drops the H x W branch and averages the other two, as the authors' option.
    Cost: 2 k^2 B (C W + H C + H W) MACs (k = 7), without the H W term when no_spatial.
    """

    def __init__(self, kernel_size: int = 7, no_spatial: bool = False):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.cw = _ZPoolGate(kernel_size)
        self.hc = _ZPoolGate(kernel_size)
        self.hw = None if no_spatial else _ZPoolGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        out_cw = self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)  # pooled over H: a C x W gate
        out_hc = self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)  # pooled over W: an H x C gate
        if self.hw is None:
            return (out_cw + out_hc) / 2
        return (out_cw + out_hc + self.hw(x)) / 3
