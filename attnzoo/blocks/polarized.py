"""Polarized Self-Attention: a channel-only and a spatial-only branch."""

from __future__ import annotations

import torch
import torch.nn as nn

LAYOUTS = ("parallel", "sequential")


class PolarizedSelfAttention(nn.Module):
    """Polarized Self-Attention (PSA), parallel layout by default.

    Liu et al., "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", arXiv 2021,
    https://arxiv.org/abs/2107.00782. Channel-only branch: a query 1x1 conv C -> 1 softmaxed over the H W
    positions pools a value 1x1 conv C -> C/2 into a C/2 vector, a 1x1 conv C/2 -> C, LayerNorm over the C
    channels and a sigmoid give one weight per channel. Spatial-only branch: a query 1x1 conv C -> C/2, globally
    pooled and softmaxed over its C/2 channels, is multiplied with a value 1x1 conv C -> C/2 and a sigmoid gives
    one weight per pixel. ``layout="parallel"`` sums the two gated copies of the input;
    ``layout="sequential"`` applies the spatial branch to the channel branch's output. Follows the paper's
    equations (as External-Attention-pytorch's ``PolarizedSelfAttention`` does), 1x1 convolutions with biases
    (``bias=False`` drops them). The authors' released ``PSA_p`` / ``PSA_s`` (DeLightCMU/PSA) depart from the
    paper: no LayerNorm, no biases, and in the spatial branch the softmax is taken over the pixels after the
    product instead of over the channels of the pooled query.
    Cost: H W (3 C (C/2) + C + 2 (C/2)) + C (C/2) MACs per image.
    """

    def __init__(self, channels: int, layout: str = "parallel", bias: bool = True):
        super().__init__()
        if channels < 2:
            raise ValueError(f"channels must be at least 2 (the branches work at C/2), got {channels}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
        self.layout = layout
        inner = channels // 2
        self.ch_value = nn.Conv2d(channels, inner, 1, bias=bias)
        self.ch_query = nn.Conv2d(channels, 1, 1, bias=bias)
        self.ch_up = nn.Conv2d(inner, channels, 1, bias=bias)
        self.ch_norm = nn.LayerNorm(channels)
        self.sp_value = nn.Conv2d(channels, inner, 1, bias=bias)
        self.sp_query = nn.Conv2d(channels, inner, 1, bias=bias)

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        value = self.ch_value(x).flatten(2)  # (B, C/2, N)
        query = self.ch_query(x).flatten(2).softmax(-1)  # (B, 1, N)
        pooled = torch.matmul(value, query.transpose(1, 2))  # (B, C/2, 1)
        up = self.ch_up(pooled.unsqueeze(-1)).flatten(1)  # (B, C)
        return torch.sigmoid(self.ch_norm(up)).view(b, c, 1, 1)

    def spatial_weights(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        value = self.sp_value(x).flatten(2)  # (B, C/2, N)
        query = self.sp_query(x).mean((2, 3)).softmax(-1).unsqueeze(1)  # (B, 1, C/2)
        return torch.sigmoid(torch.matmul(query, value)).view(b, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        channel_out = x * self.channel_weights(x)
        if self.layout == "sequential":
            return channel_out * self.spatial_weights(channel_out)
        return channel_out + x * self.spatial_weights(x)
