"""Non-local block (embedded Gaussian)."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.functional import dot_product_attention


class NonLocal(nn.Module):
    """Non-local block, embedded Gaussian version.

    Wang et al., "Non-local Neural Networks", CVPR 2018, https://arxiv.org/abs/1711.07971.
    theta, phi, g: 1x1 convolutions C -> C/2 (with bias); f = softmax_j(theta_i . phi_j) with no scaling
    (the paper's embedded Gaussian); y = f g; z = BN(W_z y) + x with W_z a 1x1 convolution C/2 -> C and
    the BatchNorm's weight and bias initialised to zero, so the block starts as the identity (paper, sec. 4.1).
    ``reduction`` = 2 gives the paper's inner width C/2. The paper's optional sub-sampling (max-pooling phi
    and g) is not applied: every position attends every position. timm's NonLocalAttn departs from the
    paper in its defaults (inner C/8 rounded to 8, logits scaled by C^-1/2); with rd_channels = C/2 and
    use_scale=False it is this block.
    Cost: B (4 C (C/2) N + 2 N^2 (C/2)) MACs.
    """

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        inner = channels // reduction if reduction >= 1 else 0
        if inner < 1:
            raise ValueError(f"channels ({channels}) must be at least the reduction ({reduction})")
        self.inner = inner
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.w_z = nn.Conv2d(inner, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, c, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, C/2)
        k = self.phi(x).flatten(2).transpose(1, 2)  # (B, N, C/2)
        v = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C/2)
        y, weights = dot_product_attention(q, k, v, scale=1.0, need_weights=return_attention)  # (B, N, C/2)
        y = y.transpose(1, 2).reshape(b, self.inner, h, w)
        out = self.bn(self.w_z(y)) + x
        return (out, weights) if return_attention else out
