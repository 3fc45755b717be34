"""Swin Transformer window attention (W-MSA) and shifted-window attention (SW-MSA).

Liu, Lin, Cao, Hu, Wei, Zhang, Lin, Guo, "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows", ICCV 2021, https://arxiv.org/abs/2103.14030.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.functional import _last_dim_contiguous
from attnzoo.blocks.self_attention import _check_heads

#: The additive mask of the official code between tokens of different shifted regions (not -inf).
SHIFT_MASK_VALUE = -100.0


def relative_position_index(win_h: int, win_w: int) -> torch.Tensor:
    """(win_h win_w, win_h win_w): index into the (2 win_h - 1)(2 win_w - 1) bias table for each pair."""
    rows, cols = torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + win_h - 1  # (n, n) in [0, 2 win_h - 2]
    d_col = cols[:, None] - cols[None, :] + win_w - 1
    return d_row * (2 * win_w - 1) + d_col


class SwinWindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, with relative position bias and an optional
    cyclic shift of half a window (SW-MSA) and its mask.

    Swin Transformer (ICCV 2021), https://arxiv.org/abs/2103.14030, sec. 3.2; the attention of a Swin block
    without its LayerNorm, MLP and residual, checked against timm's ``WindowAttention`` and
    ``SwinTransformerBlock._attn``. Window 7; ``num_heads`` 2 in the card (head width 32 at 64 channels, as
    Swin); qkv and output projections with bias; a learned (2 wh - 1)(2 ww - 1) x heads bias table.
    ``shift=True`` rolls the map by (-wh // 2, -ww // 2) before the windows and back after, and masks the
    pairs that the roll brought together from opposite borders (additive -100, as the official code).
    As Swin and timm, a side not larger than the window shrinks the window to it and is not shifted.
    Padding: a side that is not a multiple of the window is zero-padded at the bottom / right, the padded
    tokens take part as keys (k = b_k, v = b_v, unmasked, as the reference) and their outputs are cropped.
    With a shift the map is padded first and then rolled, as the official detection / segmentation code
    (Swin-Transformer-Object-Detection); timm rolls the unpadded map and pads after, so that its mask,
    computed on the padded grid, misses the border seam for some sizes (12 x 12 with window 7 lets
    row 11 and row 0 attend to each other). attnzoo follows the official order; tests compare with timm on
    the padded map.
    Cost: N' (4 C^2 + 2 wh ww C) MACs per image, N' = H' W' the padded map (projections run on the
    windows, padding included, as the reference): linear in N at a fixed window.
    """

    def __init__(self, dim: int, height: int, width: int, num_heads: int = 2, window_size: int = 7,
                 shift: bool = False, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 fused: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be positive, got {height} x {width}")
        if window_size < 1:
            raise ValueError(f"window_size must be positive, got {window_size}")
        self.num_heads = num_heads
        self.height, self.width = height, width
        self.window = (min(window_size, height), min(window_size, width))
        self.shift_size = tuple(w // 2 if shift and side > w else 0
                                for side, w in zip((height, width), self.window))
        self.fused = fused
        self.attn_drop = attn_drop
        win_h, win_w = self.window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * win_h - 1) * (2 * win_w - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(win_h, win_w), persistent=False)
        self.register_buffer("shift_mask", self._shift_mask(), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _padded(self) -> tuple[int, int]:
        (win_h, win_w), h, w = self.window, self.height, self.width
        return h + (-h) % win_h, w + (-w) % win_w

    def _shift_mask(self) -> torch.Tensor | None:
        """(windows, n, n) additive mask: 0 within a region of the rolled padded map, -100 across regions."""
        if not any(self.shift_size):
            return None
        hp, wp = self._padded()
        region = torch.zeros(hp, wp)
        label = 0
        bounds = [((0, side - w), (side - w, side - s), (side - s, side))
                  for side, w, s in zip((hp, wp), self.window, self.shift_size)]
        for r0, r1 in bounds[0]:
            for c0, c1 in bounds[1]:
                region[r0:r1, c0:c1] = label
                label += 1
        win_h, win_w = self.window
        region = region.view(hp // win_h, win_h, wp // win_w, win_w).transpose(1, 2).reshape(-1, win_h * win_w)
        differ = region[:, :, None] != region[:, None, :]  # (windows, n, n)
        return torch.zeros(differ.shape).masked_fill(differ, SHIFT_MASK_VALUE)

    def relative_position_bias(self) -> torch.Tensor:
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (n*n, heads)
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (heads, n, n)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        h, w = self.height, self.width
        if n != h * w:
            raise ValueError(f"Swin window attention was built for a {h} x {w} map ({h * w} tokens), got {n}")
        (win_h, win_w), (s_h, s_w) = self.window, self.shift_size
        hp, wp = self._padded()
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))  # (B, H', W', C)
        if s_h or s_w:
            x = torch.roll(x, shifts=(-s_h, -s_w), dims=(1, 2))
        gh, gw = hp // win_h, wp // win_w
        x = x.view(b, gh, win_h, gw, win_w, c).transpose(2, 3).reshape(b, gh * gw, win_h * win_w, c)
        qkv = self.qkv(x).view(b, gh * gw, win_h * win_w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (B, windows, heads, n, head_dim)
        bias = self.relative_position_bias()  # (heads, n, n)
        if self.shift_mask is not None:
            bias = bias + self.shift_mask[:, None]  # (windows, heads, n, n)
        drop = self.attn_drop if self.training else 0.0
        weights = None
        if self.fused and not return_attention:
            # 4-D (batch x windows, heads, n, head_dim): SDPA's fused CPU kernel takes 4-D inputs only.
            mask = (bias.expand(b, *bias.shape).flatten(0, 1) if bias.dim() == 4 else bias).to(q.dtype)
            q, k, v = (_last_dim_contiguous(t.flatten(0, 1)) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop).unflatten(0, (b, -1))
        else:
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1) + bias  # (B, windows, heads, n, n)
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, drop) @ v
        out = out.transpose(2, 3).reshape(b, gh * gw, win_h * win_w, c)  # (B, windows, n, C)
        out = self.proj_drop(self.proj(out))
        out = out.view(b, gh, gw, win_h, win_w, c).transpose(2, 3).reshape(b, hp, wp, c)  # (B, H', W', C)
        if s_h or s_w:
            out = torch.roll(out, shifts=(s_h, s_w), dims=(1, 2))
        out = out[:, :h, :w].reshape(b, n, c)  # (B, N, C)
        return (out, weights) if return_attention else out
