"""Halo attention (HaloNet).

Vaswani, Ramachandran, Srinivas, Parmar, Hechtman, Shlens, "Scaling Local Self-Attention for Parameter
Efficient Visual Backbones", CVPR 2021, https://arxiv.org/abs/2103.12731.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.functional import _last_dim_contiguous


class HaloAttention(nn.Module):
    """Blocked local self-attention: each b x b block of queries attends to its (b + 2h) x (b + 2h) halo.

    HaloNet (CVPR 2021), https://arxiv.org/abs/2103.12731, sec. 2-3; follows timm's ``HaloAttn``
    (``timm.layers.halo_attn``; there is no official code), stride 1: block 8, halo 3, 8 heads, 1x1
    q and kv convolutions without bias; keys and values of the halo beyond the map are zeros (the kv map is
    zero-padded after its convolution, not masked); factorised relative position logits (one learned
    (2 win - 1) x head_dim table for rows, one for columns, win = block + 2 halo), added to the scaled
    q k^T (not scaled themselves). As timm, H and W must be multiples of the block: other maps are refused
    (HaloNet's inputs are multiples by construction). Head width ``channels // num_heads`` for q, k and v
    (timm rounds the q/k width up to a multiple of 8 first: the same for channels divisible by 8 heads).
    Cost: N C (3C + 2 win^2 + 2 (2 win - 1)) MACs per image (q, kv; q k^T and the weighted sum of v over
    win^2 keys; the two relative-logit products): linear in N.
    """

    def __init__(self, channels: int, height: int | None = None, width: int | None = None, num_heads: int = 8,
                 block_size: int = 8, halo_size: int = 3, qkv_bias: bool = False, fused: bool = True):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if block_size < 1 or halo_size < 0:
            raise ValueError(f"block_size must be positive and halo_size not negative, got {block_size}, {halo_size}")
        for side, value in (("height", height), ("width", width)):
            if value is not None and value % block_size:
                raise ValueError(f"{side} ({value}) must be a multiple of block_size ({block_size})")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.block_size, self.halo_size = block_size, halo_size
        self.win_size = block_size + 2 * halo_size
        self.fused = fused
        self.q = nn.Conv2d(channels, channels, 1, bias=qkv_bias)
        self.kv = nn.Conv2d(channels, 2 * channels, 1, bias=qkv_bias)
        scale = self.head_dim ** -0.5
        self.height_rel = nn.Parameter(torch.randn(2 * self.win_size - 1, self.head_dim) * scale)
        self.width_rel = nn.Parameter(torch.randn(2 * self.win_size - 1, self.head_dim) * scale)
        # Table row for query (i, j) of a block and key (a, b) of its window: a - i + win - 1 (rows) and
        # b - j + win - 1 (columns); the true offset is a - halo - i, so the first win - b rows stay unused.
        qi, qj = torch.meshgrid(torch.arange(block_size), torch.arange(block_size), indexing="ij")
        key = torch.arange(self.win_size)
        self.register_buffer("row_index", key[None, :] - qi.reshape(-1, 1) + self.win_size - 1,
                             persistent=False)  # (b^2, win)
        self.register_buffer("col_index", key[None, :] - qj.reshape(-1, 1) + self.win_size - 1,
                             persistent=False)

    def relative_logits(self, q: torch.Tensor) -> torch.Tensor:
        """q (..., b^2, head_dim) -> (..., b^2, win^2) position logits: row logit + column logit."""
        lead = q.shape[:-1]
        rows = (q @ self.height_rel.t()).gather(-1, self.row_index.expand(*lead, -1))  # (..., b^2, win)
        cols = (q @ self.width_rel.t()).gather(-1, self.col_index.expand(*lead, -1))  # (..., b^2, win)
        return (rows[..., :, None] + cols[..., None, :]).flatten(-2)  # (..., b^2, win^2), key row-major

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, c, h, w = x.shape
        bs, halo, win, heads, d = self.block_size, self.halo_size, self.win_size, self.num_heads, self.head_dim
        if h % bs or w % bs:
            raise ValueError(f"height and width ({h} x {w}) must be multiples of block_size ({bs})")
        gh, gw = h // bs, w // bs
        q = self.q(x).view(b, heads, d, gh, bs, gw, bs).permute(0, 1, 3, 5, 4, 6, 2)
        q = q.reshape(b, heads, gh * gw, bs * bs, d)  # (B, heads, blocks, b^2, head_dim)
        kv = F.pad(self.kv(x), (halo, halo, halo, halo))  # (B, 2C, H + 2 halo, W + 2 halo)
        kv = kv.unfold(2, win, bs).unfold(3, win, bs)  # (B, 2C, gh, gw, win, win)
        kv = kv.reshape(b, heads, 2 * d, gh * gw, win * win).permute(0, 1, 3, 4, 2)
        k, v = kv.split([d, d], dim=-1)  # each (B, heads, blocks, win^2, head_dim); per head [k, v] channels
        pos = self.relative_logits(q)  # (B, heads, blocks, b^2, win^2)
        weights = None
        if self.fused and not return_attention:
            # 4-D (batch x heads, blocks, ...): SDPA's fused CPU kernel takes 4-D inputs only,
            # with stride 1 along head_dim (k and v are slices of one tensor), else it falls back to the math path.
            q, k, v = (_last_dim_contiguous(t.flatten(0, 1)) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=pos.flatten(0, 1)).unflatten(0, (b, heads))
        else:
            weights = ((q * d ** -0.5) @ k.transpose(-2, -1) + pos).softmax(dim=-1)
            out = weights @ v  # (B, heads, blocks, b^2, head_dim)
        out = out.view(b, heads, gh, gw, bs, bs, d).permute(0, 1, 6, 2, 4, 3, 5).reshape(b, c, h, w)
        return (out, weights) if return_attention else out
