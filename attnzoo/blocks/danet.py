"""DANet: position and channel attention modules."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.functional import dot_product_attention


class PositionAttention(nn.Module):
    """DANet's position attention module (PAM): softmax(q^T k) over positions, q and k at C/8, v at C,
    out = gamma * (v weighted by the attention) + x, gamma starting at 0."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = channels // reduction if reduction >= 1 else 0
        if inner < 1:
            raise ValueError(f"channels ({channels}) must be at least the reduction ({reduction})")
        self.inner = inner
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = self.key(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, N, C)
        out, _ = dot_product_attention(q, k, v, scale=1.0)  # (B, N, C); no scaling, as the authors' code
        return self.gamma * out.transpose(1, 2).reshape(b, c, h, w) + x


class ChannelAttention(nn.Module):
    """DANet's channel attention module (CAM): energy = A A^T over channels (C x C), no projections,
    out = gamma * (attention A) + x, gamma starting at 0. ``energy="official"`` takes the softmax of
    (row max - energy), as the authors' code; ``"paper"`` the softmax of the energy, as the paper's Eq. 3."""

    def __init__(self, energy: str = "official"):
        super().__init__()
        if energy not in ("official", "paper"):
            raise ValueError(f"energy must be 'official' or 'paper', got '{energy}'")
        self.negate = energy == "official"
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a = x.flatten(2)  # (B, C, N)
        energy = torch.bmm(a, a.transpose(1, 2))  # (B, C, C)
        if self.negate:
            energy = energy.amax(-1, keepdim=True) - energy
        attention = torch.softmax(energy, dim=-1)
        out = torch.bmm(attention, a).view(b, c, h, w)  # (B, C, H, W)
        return self.gamma * out + x


class DualAttention(nn.Module):
    """Dual Attention Network's attention block: position module + channel module, summed.

    Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019, https://arxiv.org/abs/1809.02983.
    PAM: 1x1 convolutions (with bias) to queries and keys at C/8 and values at C, softmax(q_i . k_j) over the
    positions without scaling, out = gamma_p * attended + x. CAM: the C x C Gram matrix of the map, softmax,
    out = gamma_c * attended + x. Both gammas start at 0. The block returns PAM(x) + CAM(x), the paper's
    sum fusion of the two modules (each with its own residual, as the authors' code junfu1115/DANet
    da_att.py), so it starts as 2 x. The convolutions that DANet's segmentation head puts before and after
    each module (3x3 conv + BN + ReLU) are not part of the block.
    Departure in the authors' code, followed by default: CAM takes the softmax of (max - energy), i.e. of
    -A A^T (the paper's Eq. 3 has +A A^T); ``cam_energy="paper"`` gives the paper's.
    External-Attention-pytorch's DAModule is a different mechanism (a 3x3 conv then transformer-style
    attention with q/k/v/out projections) and builds its parts at d_model=512 whatever is passed.
    Cost: B (2 C (C/8) N + C^2 N + N^2 (C/8 + C) + 2 C^2 N) MACs.
    """

    def __init__(self, channels: int, reduction: int = 8, cam_energy: str = "official"):
        super().__init__()
        self.position = PositionAttention(channels, reduction)
        self.channel = ChannelAttention(cam_energy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        return self.position(x) + self.channel(x)
