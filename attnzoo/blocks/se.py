"""Squeeze-and-Excitation."""

from __future__ import annotations

import torch
import torch.nn as nn


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation block.

    Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018, https://arxiv.org/abs/1709.01507.
    Global average pooling, FC C -> C/r with bias, ReLU, FC C/r -> C with bias, sigmoid, channel-wise scale;
    r = 16 as the paper recommends. The hidden width is floor(C / r), at least 1 (timm rounds it to a
    multiple of 8 instead). Cost: 2 C floor(C / r) MACs per image (the two FC layers; pooling and scaling
    are not multiply-adds): flat in N.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError("channels and reduction must be positive")
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean((2, 3))  # (B, C)
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(squeezed))))  # (B, C)
        return x * scale[:, :, None, None]
