"""Gated Channel Transformation (GCT)."""

from __future__ import annotations

import torch
import torch.nn as nn

MODES = ("l2", "l1")


class GCT(nn.Module):
    """Gated Channel Transformation.

    Yang et al., "Gated Channel Transformation for Visual Recognition", CVPR 2020,
    https://arxiv.org/abs/1909.11519. Follows the paper and the authors' code (z-x-yang/GCT, ``PyTorch/GCT.py``).

    Per channel an embedding ``s_c = alpha_c * ||x_c||`` over the H x W positions (l2: ``sqrt(sum x^2 + eps)``;
    l1: ``sum |x|``, or ``sum x`` when ``after_relu`` says the input is already non-negative), a channel
    normalisation ``s_c * gamma_c / sqrt(mean_c s^2 + eps)`` (l1: ``/ (mean_c |s| + eps)``) and a gate
    ``1 + tanh(. + beta_c)`` that scales ``x``. Parameters start at alpha = 1, gamma = 0, beta = 0, so the block
    is the identity at initialisation; epsilon = 1e-5. An unknown ``mode`` raises ValueError (the reference
    calls ``sys.exit`` without importing ``sys``).
    Cost: N C MACs per image for the l2 embedding (a sum of squares, written as an einsum so that MAC counters
    see it); the gating (N C multiplications) and the O(C) normalisation are elementwise, not multiply-adds:
    linear in N. The l1 mode has no multiply-accumulates at all (a sum of absolute values): 0 MACs.
    """

    def __init__(self, channels: int, epsilon: float = 1e-5, mode: str = "l2", after_relu: bool = False):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if mode not in MODES:
            raise ValueError(f"unknown GCT mode '{mode}'; expected one of {', '.join(MODES)}")
        self.channels = channels
        self.epsilon = epsilon
        self.mode = mode
        self.after_relu = after_relu
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        if self.mode == "l2":
            squares = torch.einsum("bchw,bchw->bc", x, x)[:, :, None, None]  # (B, C, 1, 1): N C MACs
            embedding = (squares + self.epsilon).sqrt() * self.alpha  # (B, C, 1, 1)
            norm = self.gamma / (embedding.pow(2).mean(1, keepdim=True) + self.epsilon).sqrt()  # (B, C, 1, 1)
        else:
            magnitude = x if self.after_relu else x.abs()
            embedding = magnitude.sum((2, 3), keepdim=True) * self.alpha  # (B, C, 1, 1)
            norm = self.gamma / (embedding.abs().mean(1, keepdim=True) + self.epsilon)  # (B, C, 1, 1)
        gate = 1.0 + torch.tanh(embedding * norm + self.beta)  # (B, C, 1, 1)
        return x * gate
