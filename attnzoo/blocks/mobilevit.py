"""MobileViTv2 separable self-attention.

Mehta, Rastegari, "Separable Self-attention for Mobile Vision Transformers", arXiv 2022 (TMLR 2023),
https://arxiv.org/abs/2206.02680.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SeparableSelfAttention(nn.Module):
    """Separable self-attention: one context vector from softmax-weighted keys, broadcast onto ReLU(values).

    MobileViTv2, https://arxiv.org/abs/2206.02680, sec. 3.2; follows timm's ``LinearSelfAttention``
    (``timm.models.mobilevit``, ported from apple/ml-cvnets). A 1x1 convolution (with bias) gives one
    context score, C key channels and C value channels per pixel; the scores are softmax-normalised over
    the positions, the context vector is the score-weighted sum of the keys, and the output is
    ``out_proj(relu(v) * context)`` (1x1 convolution with bias). No N x N matrix: linear in N.
    MobileViTv2 runs this on the unfolded map (B, C, P, N/P) with 2 x 2 patches, so that each of the P = 4
    pixel offsets inside a patch gets its own softmax over the N/P patches. ``patch_size`` gives that
    (MobileViTv2: 2; H and W must then be multiples of it: MobileViTv2 resizes the map, attnzoo refuses);
    the default 1 is a single context over the whole map, the module as a stand-alone global mixer.
    Cost: N C (2C + 1) + N C^2 = N C (3C + 1) MACs per image: linear in N.
    """

    def __init__(self, channels: int, patch_size: int = 1, height: int | None = None, width: int | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        for side, value in (("height", height), ("width", width)):
            if value is not None and value % patch_size:
                raise ValueError(f"{side} ({value}) must be a multiple of patch_size ({patch_size})")
        self.channels = channels
        self.patch_size = patch_size
        self.qkv_proj = nn.Conv2d(channels, 1 + 2 * channels, 1)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out_proj = nn.Conv2d(channels, channels, 1)
        self.out_drop = nn.Dropout(proj_drop)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, P, N/P): pixel offset inside the patch, then patch index (row-major)."""
        b, c, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"height and width ({h} x {w}) must be multiples of patch_size ({p})")
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4)  # (B, C, p, p, H/p, W/p)
        return x.reshape(b, c, p * p, (h // p) * (w // p))

    def fold(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, c = x.shape[:2]
        p = self.patch_size
        x = x.reshape(b, c, p, p, h // p, w // p).permute(0, 1, 4, 2, 5, 3)  # (B, C, H/p, p, W/p, p)
        return x.reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.unfold(x)  # (B, C, P, N/P)
        score, key, value = self.qkv_proj(x).split([1, self.channels, self.channels], dim=1)
        score = self.attn_drop(F.softmax(score, dim=-1))  # (B, 1, P, N/P): over the patches
        context = (key * score).sum(dim=-1, keepdim=True)  # (B, C, P, 1)
        out = self.out_drop(self.out_proj(F.relu(value) * context))  # (B, C, P, N/P)
        return self.fold(out, h, w)
