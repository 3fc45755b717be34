"""VOLO outlook attention.

Yuan, Hou, Jiang, Feng, Yan, "VOLO: Vision Outlooker for Visual Recognition", TPAMI 2022,
https://arxiv.org/abs/2106.13112.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.self_attention import _check_heads


class OutlookAttention(nn.Module):
    """Outlook attention: each position predicts, by a linear layer, the k^2 x k^2 attention of its k x k
    neighbourhood; the weighted neighbourhoods are folded back (overlaps summed).

    VOLO, https://arxiv.org/abs/2106.13112, sec. 2.1; follows timm's ``OutlookAttention``
    (``timm.models.volo``, from sail-sg/volo) on tokens (B, N, C) of an H x W map: kernel 3 (padding 1),
    stride 2 as VOLO's outlooker stage (attention predicted from the 2 x 2 average-pooled map, ceil mode,
    values unfolded with stride 2, folded back to H x W), num_heads 2 in the card (head width 32 at
    64 channels, as VOLO-D1), v without bias, attention and output projections with bias, weights scaled
    by 1/sqrt(head_dim) before the softmax. No query-key product: linear in N.
    Cost: 2 N C^2 + N_s k^4 C (heads + 1) MACs per image, N_s = ceil(H / stride) ceil(W / stride).
    """

    def __init__(self, dim: int, height: int, width: int, num_heads: int = 2, kernel_size: int = 3,
                 stride: int = 2, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be positive, got {height} x {width}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if stride < 1:
            raise ValueError(f"stride must be positive, got {stride}")
        self.num_heads, self.kernel_size, self.stride = num_heads, kernel_size, stride
        self.height, self.width = height, width
        self.scale = self.head_dim ** -0.5
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn = nn.Linear(dim, kernel_size ** 4 * num_heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, w, k, s, heads = self.height, self.width, self.kernel_size, self.stride, self.num_heads
        if n != h * w:
            raise ValueError(f"outlook attention was built for a {h} x {w} map ({h * w} tokens), got {n}")
        hs, ws = math.ceil(h / s), math.ceil(w / s)
        grid = x.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
        v = self.v(x).transpose(1, 2).reshape(b, c, h, w)
        v = F.unfold(v, k, padding=k // 2, stride=s)  # (B, C k^2, N_s)
        v = v.reshape(b, heads, self.head_dim, k * k, hs * ws).permute(0, 1, 4, 3, 2)  # (B, heads, N_s, k^2, d)
        pooled = F.avg_pool2d(grid, s, s, ceil_mode=True) if s > 1 else grid  # (B, C, H_s, W_s)
        attn = self.attn(pooled.flatten(2).transpose(1, 2))  # (B, N_s, heads k^4)
        attn = attn.reshape(b, hs * ws, heads, k * k, k * k).transpose(1, 2)  # (B, heads, N_s, k^2, k^2)
        attn = self.attn_drop((attn * self.scale).softmax(dim=-1))
        out = (attn @ v).permute(0, 1, 4, 3, 2).reshape(b, c * k * k, hs * ws)  # (B, C k^2, N_s)
        out = F.fold(out, (h, w), k, padding=k // 2, stride=s)  # (B, C, H, W), overlaps summed
        return self.proj_drop(self.proj(out.flatten(2).transpose(1, 2)))  # (B, N, C)
