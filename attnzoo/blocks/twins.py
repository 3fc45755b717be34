"""Twins-SVT: locally-grouped self-attention (LSA) and global sub-sampled attention (GSA).

Chu, Tian, Wang, Zhang, Ren, Wei, Xia, Shen, "Twins: Revisiting the Design of Spatial Attention in Vision
Transformers", NeurIPS 2021, https://arxiv.org/abs/2104.13840. Both are token (B, N, C) blocks that need
the map's height and width, given at build time (the cards pass ``"H"`` and ``"W"``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.functional import dot_product_attention
from attnzoo.blocks.self_attention import _check_heads


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} x {width}")


class LocallyGroupedSelfAttention(nn.Module):
    """LSA: multi-head self-attention inside non-overlapping ws x ws windows.

    Twins (NeurIPS 2021), https://arxiv.org/abs/2104.13840, sec. 3.2; window ws = 7 as Twins-SVT.
    Follows the reference code (timm's ``LocallyGroupedAttn``, ported from Meituan-AutoML/Twins): a map
    whose sides are not multiples of ws is zero-padded at the bottom and right before the qkv projection
    (with bias), so the padded positions take part as keys with k = b_k, v = b_v; their outputs are cropped.
    The reference keeps a masked variant commented out ("more reasonable and accurate"):
    ``mask_padding=True`` gives it (padded keys get zero weight); ``False`` (default) matches pretrained
    Twins weights.
    Scale 1/sqrt(head_dim); output projection with bias.
    Cost: 3 N' C^2 + 2 N' ws^2 C + N C^2 MACs per image, N' = H' W' the padded map (the output projection
    runs on the N cropped tokens): linear in N.
    """

    def __init__(self, dim: int, height: int, width: int, num_heads: int = 8, window_size: int = 7,
                 mask_padding: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        _check_size(height, width)
        if window_size < 1:
            raise ValueError(f"window_size must be positive, got {window_size}")
        self.num_heads = num_heads
        self.height, self.width = height, width
        self.window_size = window_size
        self.mask_padding = mask_padding
        self.fused = fused
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        h, w, ws = self.height, self.width, self.window_size
        if n != h * w:
            raise ValueError(f"LSA was built for a {h} x {w} map ({h * w} tokens), got {n}")
        pad_b, pad_r = (-h) % ws, (-w) % ws
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))  # (B, H', W', C)
        gh, gw = (h + pad_b) // ws, (w + pad_r) // ws
        x = x.view(b, gh, ws, gw, ws, c).transpose(2, 3)  # (B, gh, gw, ws, ws, C)
        qkv = self.qkv(x).reshape(b, gh * gw, ws * ws, 3, self.num_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # each (B, windows, heads, ws*ws, head_dim)
        mask = None
        if self.mask_padding and (pad_b or pad_r):
            valid = torch.zeros(h + pad_b, w + pad_r, dtype=torch.bool, device=x.device)
            valid[:h, :w] = True
            mask = valid.view(gh, ws, gw, ws).transpose(1, 2).reshape(gh * gw, 1, 1, ws * ws)  # keys
        drop = self.attn_drop if self.training else 0.0
        if mask is None:
            out, weights = dot_product_attention(q, k, v, dropout_p=drop, fused=self.fused,
                                                 need_weights=return_attention)
        else:
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)  # (B, windows, heads, ws^2, ws^2)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            out = F.dropout(weights, drop) @ v
        out = out.transpose(2, 3).reshape(b, gh, gw, ws, ws, c).transpose(2, 3)  # (B, gh, ws, gw, ws, C)
        out = out.reshape(b, gh * ws, gw * ws, c)[:, :h, :w].reshape(b, n, c)  # (B, N, C)
        out = self.proj_drop(self.proj(out))
        return (out, weights) if return_attention else out


class GlobalSubSampledAttention(nn.Module):
    """GSA: every pixel attends to a sub-sampled map, one key per sr x sr patch.

    Twins (NeurIPS 2021), https://arxiv.org/abs/2104.13840, sec. 3.2 (the spatial-reduction attention of
    PVT). q from every pixel (linear with bias); keys and values from the map reduced by an sr x sr
    convolution with stride sr, then LayerNorm, then one kv linear (with bias); output projection. sr = 1 is
    plain multi-head self-attention (no convolution, no norm). Twins-SVT uses sr = 8, 4, 2, 1 over its four
    stages; the card takes 4. As in the official code, a side that is not a multiple of sr is floored by the
    strided convolution (the last H mod sr rows and W mod sr columns give no key); a side shorter than sr
    raises ValueError.
    Cost: 2 N C^2 (q, output) + N' sr^2 C^2 (the sr x sr conv, none when sr = 1) + 2 N' C^2 (kv) + 2 N N' C
    MACs per image with N' = floor(H/sr) floor(W/sr): N^2 at fixed sr.
    """

    def __init__(self, dim: int, height: int, width: int, num_heads: int = 8, sr_ratio: int = 4,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        _check_size(height, width)
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be positive, got {sr_ratio}")
        if height < sr_ratio or width < sr_ratio:
            raise ValueError(f"the map ({height} x {width}) is smaller than the {sr_ratio} x {sr_ratio} "
                             f"sub-sampling patch; use a smaller sr_ratio")
        self.num_heads = num_heads
        self.height, self.width = height, width
        self.sr_ratio = sr_ratio
        self.fused = fused
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, 2 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)
        else:
            self.sr = None
            self.norm = None

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        h, w = self.height, self.width
        if n != h * w:
            raise ValueError(f"GSA was built for a {h} x {w} map ({h * w} tokens), got {n}")
        q = self.q(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, N, head_dim)
        if self.sr is not None:
            reduced = self.sr(x.transpose(1, 2).reshape(b, c, h, w))  # (B, C, H/sr, W/sr)
            x = self.norm(reduced.flatten(2).transpose(1, 2))  # (B, N', C)
        kv = self.kv(x).view(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # each (B, heads, N', head_dim)
        drop = self.attn_drop if self.training else 0.0
        out, weights = dot_product_attention(q, k, v, dropout_p=drop, fused=self.fused,
                                             need_weights=return_attention)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))  # (B, N, C)
        return (out, weights) if return_attention else out
