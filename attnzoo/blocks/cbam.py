"""CBAM: channel attention then spatial attention."""

from __future__ import annotations

import torch
import torch.nn as nn

POOLS = ("avg", "max", "lp", "lse")


def _pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    flat = x.flatten(2)  # (B, C, N)
    if kind == "avg":
        return flat.mean(-1)
    if kind == "max":
        return flat.amax(-1)
    if kind == "lp":
        return flat.pow(2).sum(-1).sqrt()
    return flat.logsumexp(-1)  # "lse"


class ChannelGate(nn.Module):
    """Pooled descriptors through one shared MLP (with biases), summed, sigmoid: a weight per channel."""

    def __init__(self, channels: int, reduction: int = 16, pool_types: tuple[str, ...] = ("avg", "max")):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"channels ({channels}) must be at least the reduction ({reduction})")
        unknown = set(pool_types) - set(POOLS)
        if unknown or not pool_types:
            raise ValueError(f"pool_types must be taken from {', '.join(POOLS)}")
        self.pool_types = tuple(pool_types)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = sum(self.mlp(_pool(x, kind)) for kind in self.pool_types)  # (B, C)
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """Channel max and mean, a k x k convolution (no bias) with BatchNorm, sigmoid: a weight per pixel."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Convolutional Block Attention Module.

    Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018, https://arxiv.org/abs/1807.06521.
    Follows the paper and the authors' code (Jongchan/attention-module): reduction 16, average and max
    pooling through a shared MLP with biases, then the spatial gate on [max, mean] with a 7x7 convolution
    and BatchNorm (momentum 0.01). The copy in the first article defaults to ``no_spatial=True`` (channel
    gate only); attnzoo defaults to the paper's full module and keeps ``no_spatial`` as an option.
    Cost: 4 C floor(C / r) (the shared MLP on the two pooled descriptors) + 2 k^2 N (the spatial conv) MACs
    per image (pooling and gating are not multiply-adds; 4 C floor(C / r) alone with ``no_spatial``).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7,
                 pool_types: tuple[str, ...] = ("avg", "max"), no_spatial: bool = False):
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction, tuple(pool_types))
        self.spatial_gate = None if no_spatial else SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        x = self.channel_gate(x)
        return x if self.spatial_gate is None else self.spatial_gate(x)
