"""Effective Squeeze-and-Excitation (eSE) from CenterMask / VoVNetV2."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class EffectiveSE(nn.Module):
    """Effective Squeeze-and-Excitation (eSE).

    Lee & Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020,
    https://arxiv.org/abs/1911.06667. SE with its two reduced FC layers replaced by one FC C -> C (a 1x1
    convolution with bias), so no channel information is lost to the reduction, and a hard sigmoid gate
    (relu6(x + 3) / 6) as in the authors' VoVNetV2 code and timm's ``EffectiveSEModule``.
    Cost: C^2 MACs per image (the FC); pooling and scaling are not multiply-adds.
    """

    def __init__(self, channels: int):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * F.hardsigmoid(self.fc(squeezed))
