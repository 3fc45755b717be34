"""The attention module of the Residual Attention Network."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit, C -> C: (BN, ReLU, 1x1 C -> C/4), (BN, ReLU, 3x3),
    (BN, ReLU, 1x1 C/4 -> C), no biases, plus the identity. U = 2 C h + 9 h^2 MACs per pixel, h = max(1, C // 4)
    (about 1.06 C^2)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(1, channels // 4)
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _units(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(PreActBottleneck(channels) for _ in range(count)))


def min_side(depth: int) -> int:
    """The smallest height or width that ``depth`` stride-2 max-pools can halve (each pool sees a side >= 2)."""
    return 2 ** (depth - 1) + 1


class ResidualAttentionModule(nn.Module):
    """Attention module of the Residual Attention Network, C -> C.

    Wang et al., "Residual Attention Network for Image Classification", CVPR 2017,
    https://arxiv.org/abs/1704.06904. p = 1 pre-activation bottleneck unit before the split and after the
    merge, a trunk of t = 2 units, and a soft-mask branch: ``depth`` times (3x3 max-pool, stride 2, then r = 1
    unit), 2r units at the lowest resolution, then back up: bilinear upsampling to the actual size of the level
    above plus a skip connection (one residual unit on that level's features), r units; a last bilinear
    upsampling to the input's size, then (BN, ReLU, 1x1 conv) twice and a sigmoid gives M (B, C, H, W).
    Output: post((1 + M) * T) (attention residual learning).

    depth = 3 is the paper's first-stage module (56 -> 28 -> 14 -> 7); stages 2 and 3 use 2 and 1. Sizes come
    from the input, never fixed (the tengshaofeng port hard-codes them); a map whose side cannot be halved
    ``depth`` times (each pool must see at least 2 pixels: side >= 2^(depth-1) + 1, 5 for depth 3) raises
    ValueError, at build when the card passes ``height`` and ``width``, else in forward. The tengshaofeng
    port also adds the pooled features and, at the top, the trunk output to each upsampled map; attnzoo
    keeps to the paper's skip connections only. Upsampling uses align_corners=True as that port.
    Cost: U (N (2p + t) + sum over levels l = 1..depth of N_l u_l) + 2 N C^2 MACs per image, with U = 2 C h +
    9 h^2 (one unit per pixel, h = max(1, C // 4)), N_l = ceil(H / 2^l) ceil(W / 2^l), u_l = 2r + 1 units for l < depth
    and 2r at the bottom (l = depth); 2 N C^2 are the mask's 1x1 convs. At depth 3, about 7.3 N C^2: linear in N.
    (The card's formula writes this sum out for depth <= 3.)
    """

    def __init__(self, channels: int, depth: int = 3, p: int = 1, t: int = 2, r: int = 1,
                 height: int | None = None, width: int | None = None):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if depth < 1 or p < 0 or t < 1 or r < 0:
            raise ValueError(f"need depth >= 1, t >= 1, p >= 0 and r >= 0, got depth={depth} p={p} t={t} r={r}")
        self.depth = depth
        if height is not None and width is not None:
            self._check_size(height, width)
        self.pre = _units(channels, p)
        self.trunk = _units(channels, t)
        self.down = nn.ModuleList(_units(channels, r) for _ in range(depth - 1))
        self.skips = nn.ModuleList(PreActBottleneck(channels) for _ in range(depth - 1))
        self.bottom = _units(channels, 2 * r)
        self.up = nn.ModuleList(_units(channels, r) for _ in range(depth - 1))
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False))
        self.post = _units(channels, p)

    def _check_size(self, height: int, width: int) -> None:
        need = min_side(self.depth)
        if height < need or width < need:
            raise ValueError(f"the soft-mask branch halves the map {self.depth} times: height and width must be "
                             f"at least {need}, got {height}x{width} (lower depth for smaller maps)")

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The soft mask M in (0, 1), shape (B, C, H, W), of the (pre-processed) features ``x``."""
        skips = []
        m = x
        for level in range(self.depth):
            m = F.max_pool2d(m, 3, stride=2, padding=1)  # (B, C, ceil(h/2), ceil(w/2))
            if level < self.depth - 1:
                m = self.down[level](m)
                skips.append(self.skips[level](m))
        m = self.bottom(m)  # lowest resolution
        for level in reversed(range(self.depth - 1)):
            m = F.interpolate(m, size=skips[level].shape[2:], mode="bilinear", align_corners=True)
            m = self.up[level](m + skips[level])
        m = F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=True)  # (B, C, H, W)
        return torch.sigmoid(self.mask_head(m))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, C, H, W)
        self._check_size(x.shape[2], x.shape[3])
        x = self.pre(x)
        trunk = self.trunk(x)  # (B, C, H, W)
        mask = self.mask(x)  # (B, C, H, W)
        out = self.post((1 + mask) * trunk)
        return (out, mask) if return_attention else out
