"""Selective Kernel convolution (SKNet)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from attnzoo.blocks.pooled_norm import check_pooled_batch


class SelectiveKernel(nn.Module):
    """Selective Kernel (SK) convolution, C -> C channels at stride 1.

    Li et al., "Selective Kernel Networks", CVPR 2019, https://arxiv.org/abs/1903.06586.
    Split: M paths, path m a grouped 3x3 conv with dilation m + 1 (so the second path covers 5x5, as the
    paper's "5x5 as dilated 3x3"), no bias, BN, ReLU. Fuse: U = sum of the paths, s = GAP(U),
    z = ReLU(BN(W s)) with W: C -> d, d = max(C / r, L). Select: one 1x1 conv (no bias) d -> M C gives the
    paper's per-path matrices A, B, ...; softmax over the M paths per channel; V = sum_m a_m U_m.
    Defaults are the paper's: M = 2, G = 32, r = 16, L = 32. When C is not a multiple of G the paths use
    gcd(C, G) groups (C = 48 gives 16 groups, C = 33 gives 1); the number used is ``self.groups``. Training
    needs a batch of at least 2 (BatchNorm of the pooled descriptor z).
    Equal to timm ``SelectiveKernel(C, C, kernel_size=[3, 5], groups=G, rd_channels=d, split_input=False)``;
    timm's defaults differ (input split across paths, d from make_divisible(C / 16, 8), groups 1).
    Cost: 9 M N C^2 / G (path convs, G = ``self.groups``) + C d (1 + M) (fuse and select) MACs per image
    (the weighted sum of the paths is elementwise): linear in N.
    """

    def __init__(self, channels: int, num_paths: int = 2, groups: int = 32, reduction: int = 16,
                 min_dim: int = 32):
        super().__init__()
        if channels < 1 or num_paths < 1 or groups < 1 or reduction < 1 or min_dim < 1:
            raise ValueError("channels, num_paths, groups, reduction and min_dim must be positive")
        self.num_paths = num_paths
        self.groups = math.gcd(channels, groups)
        self.attn_channels = max(channels // reduction, min_dim)
        self.paths = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=m + 1, dilation=m + 1, groups=self.groups,
                                    bias=False),
                          nn.BatchNorm2d(channels), nn.ReLU())
            for m in range(num_paths))
        self.fc_reduce = nn.Conv2d(channels, self.attn_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(self.attn_channels)
        self.fc_select = nn.Conv2d(self.attn_channels, channels * num_paths, 1, bias=False)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, C, H, W)
        check_pooled_batch(x, self.training, "selective kernel")
        b, c = x.shape[:2]
        paths = torch.stack([path(x) for path in self.paths], dim=1)  # (B, M, C, H, W)
        s = paths.sum(1).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        z = torch.relu(self.bn(self.fc_reduce(s)))  # (B, d, 1, 1)
        attn = self.fc_select(z).view(b, self.num_paths, c, 1, 1).softmax(dim=1)  # (B, M, C, 1, 1)
        out = (paths * attn).sum(1)  # (B, C, H, W)
        return (out, attn) if return_attention else out
