"""GCNet: global context block."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GlobalContext(nn.Module):
    """Global Context block.

    Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond", ICCVW 2019,
    https://arxiv.org/abs/1904.11492. Context modelling: a 1x1 convolution C -> 1 (with bias) gives one
    logit per position, softmax over the H W positions, and the context is the attention-weighted sum of
    the pixels (B, C). Transform: 1x1 convolution C -> C/r, LayerNorm over the C/r channels (eps 1e-5,
    with affine, as ``nn.LayerNorm([C/r, 1, 1])`` of the authors' code, xvjiarui/GCNet), ReLU, 1x1
    convolution C/r -> C. Fusion by addition, broadcast over the map. r = 16 and the "add" fusion are the
    paper's best setting; the hidden width is floor(C / r), at least 1. As the authors' code, the last
    convolution (weight and bias) starts at zero, so the block starts as the identity.
    (timm's GlobalContext defaults to r = 8 and to "scale" fusion; its LayerNorm2d uses eps 1e-6.)
    Cost: B (2 C N + 2 C floor(C / r)) MACs.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError("channels and reduction must be positive")
        hidden = max(1, channels // reduction)
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.norm = nn.LayerNorm(hidden, eps=1e-5)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        weights = F.softmax(self.conv_mask(x).flatten(2), dim=-1)  # (B, 1, N)
        context = torch.bmm(x.flatten(2), weights.transpose(1, 2)).view(b, c, 1, 1)  # (B, C, 1, 1)
        hidden = self.fc1(context)  # (B, C/r, 1, 1)
        hidden = torch.relu(self.norm(hidden.view(b, -1))).view(b, -1, 1, 1)
        return x + self.fc2(hidden)
