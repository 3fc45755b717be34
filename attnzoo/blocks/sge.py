"""SGE: spatial group-wise enhance."""

from __future__ import annotations

import torch
import torch.nn as nn


class SpatialGroupEnhance(nn.Module):
    """Spatial Group-wise Enhance.

    Li, Hu & Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional
    Networks", arXiv 2019, https://arxiv.org/abs/1905.09646. The channels are split into G groups; in each
    group, every position's feature vector is dotted with the group's global average (a C/G-long dot
    product), the H W results are normalised (mean 0, unbiased std + 1e-5, as the authors' code
    implus/PytorchInsight), scaled and shifted by a per-group weight and bias, and the sigmoid gates the
    group. G = 64 as the paper; weight starts at 0 and bias at 1 (authors' code; External-Attention-pytorch
    starts both at 0). C must be a multiple of G; on maps with fewer than 64 channels G is lowered to C
    (one channel per group) rather than refused. A map of one position has no spread to normalise and is
    refused (ValueError in forward).
    Cost: B C N MACs (the dot products).
    """

    def __init__(self, channels: int, groups: int = 64):
        super().__init__()
        if channels < 1 or groups < 1:
            raise ValueError(f"channels and groups must be positive, got {channels}, {groups}")
        groups = min(groups, channels)
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be a multiple of groups ({groups})")
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h * w < 2:
            raise ValueError("sge needs a map of at least 2 positions (it normalises over them)")
        grouped = x.reshape(b, self.groups, c // self.groups, h * w)  # (B, G, C/G, N)
        mean = grouped.mean(-1).unsqueeze(-2)  # (B, G, 1, C/G)
        similarity = torch.matmul(mean, grouped).squeeze(-2)  # (B, G, N)
        t = similarity - similarity.mean(-1, keepdim=True)
        t = t / (t.std(-1, keepdim=True) + 1e-5)
        t = t.view(b, self.groups, h, w) * self.weight + self.bias  # (B, G, H, W)
        return (grouped * torch.sigmoid(t).view(b, self.groups, 1, h * w)).view(b, c, h, w)
