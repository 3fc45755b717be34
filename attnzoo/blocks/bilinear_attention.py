"""Bilinear attention with attention-in-attention (Fang et al., ICCV 2019)."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.pooled_norm import check_pooled_batch


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (with bias), BN, ReLU: the reference's ConvBlock."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU())


class BilinearAttention(nn.Module):
    """Bilinear attention (Bi-Attention) with the attention-in-attention (AiA) mechanism, C -> C.

    Fang et al., "Bilinear Attention Networks for Person Retrieval", ICCV 2019,
    https://openaccess.thecvf.com/content_ICCV_2019/papers/Fang_Bilinear_Attention_Networks_for_Person_Retrieval_ICCV_2019_paper.pdf
    (no arXiv version). Follows the authors' code (PengfeiFANGanu/Attention-in-Attention-Networks,
    ``models/bilinear_baseline_AIA.py``, BilinearAttention with in = out channels): a 1x1 conv + BN + ReLU
    reduces C to C' = C / r; at each pixel the second-order features z z^T are taken once per pair (the lower
    triangle, C'(C'+1)/2 values, ordered diagonal by diagonal as the reference); the outer attention is a
    1x1 conv + BN + ReLU of them to C channels (B, C, H, W), the inner attention the same on their global
    average (B, C, 1, 1); the two multiply (attention in attention), a sigmoid gives the weights that scale x.
    Both attentions end in ReLU as in the reference, so the weights lie in [0.5, 1). r = 16; C' is floored
    at 1. Training needs a batch of at least 2 (BatchNorm of the pooled features). Not timm's
    BatNonLocalAttn (a different paper).
    Cost: N C C' (reduction) + (N + 1) C C'(C'+1)/2 (outer conv at N pixels, inner conv once) MACs per image,
    about N C^3 / 512 at r = 16 (the pairwise products are elementwise, not multiply-adds): linear in N.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"channels ({channels}) and reduction ({reduction}) must be positive")
        mid = max(1, channels // reduction)
        self.channels = channels
        self.mid_channels = mid
        rows = [j + i for i in range(mid) for j in range(mid - i)]
        cols = [j for i in range(mid) for j in range(mid - i)]
        self.register_buffer("rows", torch.tensor(rows, dtype=torch.long), persistent=False)
        self.register_buffer("cols", torch.tensor(cols, dtype=torch.long), persistent=False)
        pairs = len(rows)  # C'(C'+1)/2
        self.reduce = _conv_bn_relu(channels, mid)
        self.outer = _conv_bn_relu(pairs, channels)
        self.inner = _conv_bn_relu(pairs, channels)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights sigmoid(outer * inner), shape (B, C, H, W)."""
        check_pooled_batch(x, self.training, "bilinear attention")
        z = self.reduce(x)  # (B, C', H, W)
        second = z[:, self.rows] * z[:, self.cols]  # (B, C'(C'+1)/2, H, W): z_a z_b for a >= b
        inner = self.inner(second.mean((2, 3), keepdim=True))  # (B, C, 1, 1)
        outer = self.outer(second)  # (B, C, H, W)
        return torch.sigmoid(outer * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        return x * self.attention(x)
