"""ECA: efficient channel attention."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """The paper's adaptive kernel size: |(log2 C + b) / gamma|, rounded up to odd (1 is allowed)."""
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention.

    Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks", CVPR 2020,
    https://arxiv.org/abs/1910.03151. Global average pooling, then a 1-D convolution across the channels
    (one shared kernel, no bias, zero padding), sigmoid, channel-wise scale. The kernel size k follows the
    paper's mapping from C with gamma = 2, b = 1: t = int(|(log2 C + b) / gamma|), k = t if t is odd else t + 1
    (the authors' code, BangguWu/ECANet); ``kernel_size`` given explicitly overrides it. timm's EcaModule
    additionally clamps k to at least 3, which only differs for C < 8 (attnzoo keeps the paper's k = 1 there).
    Cost: B C k MACs (the 1-D convolution; pooling and scaling are not multiply-adds).
    """

    def __init__(self, channels: int, gamma: float = 2, beta: float = 1, kernel_size: int | None = None):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        k = eca_kernel_size(channels, gamma, beta) if kernel_size is None else kernel_size
        if k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {k}")
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        pooled = x.mean((2, 3)).view(b, 1, c)  # (B, 1, C): the channels as a 1-D signal
        weight = torch.sigmoid(self.conv(pooled)).view(b, c, 1, 1)  # (B, C, 1, 1)
        return x * weight
