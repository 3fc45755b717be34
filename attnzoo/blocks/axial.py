"""Axial attention: full self-attention along each row of the map, then along each column."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.functional import dot_product_attention
from attnzoo.blocks.self_attention import _check_heads


class _AxisAttention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of (..., L, C): q and kv without bias, output
    projection with bias (lucidrains/axial-attention's ``SelfAttention``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, length, c = x.shape
        x = x.reshape(-1, length, c)  # (S, L, C): S independent sequences
        s = x.shape[0]
        q = self.to_q(x).view(s, length, self.num_heads, self.head_dim).transpose(1, 2)  # (S, heads, L, d)
        k, v = self.to_kv(x).view(s, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out, _ = dot_product_attention(q, k, v)  # (S, heads, L, d)
        out = self.to_out(out.transpose(1, 2).reshape(s, length, c))  # (S, L, C)
        return out.view(*lead, length, c)


class AxialAttention(nn.Module):
    """Axial attention: multi-head self-attention along the rows of the map, then along its columns.

    Ho, Kalchbrenner, Weissenborn, Salimans, "Axial Attention in Multidimensional Transformers", 2019,
    https://arxiv.org/abs/1912.12180. Each token attends to the W tokens of its row, then (on the
    result) to the H tokens of its column: two layers give every token a path to every other. Each axis has
    its own attention (q and kv projections without bias, output projection with bias, scale 1/sqrt(head_dim),
    8 heads), as lucidrains/axial-attention's ``AxialAttention``. That reference runs the axes in parallel and
    sums the two outputs by default (``sum_axial_out=True``) and, sequentially, takes the columns first;
    attnzoo follows the paper's row-then-column order, and ``sum_axes=True`` gives the reference's default
    (row attention + column attention, both on the input). Needs the map's height and width at build.
    Cost: 8 N C^2 + 2 N (H + W) C MACs per image: N^1.5 for square maps.
    """

    def __init__(self, dim: int, height: int, width: int, num_heads: int = 8, sum_axes: bool = False):
        super().__init__()
        _check_heads(dim, num_heads)
        if height < 1 or width < 1:
            raise ValueError(f"height and width must be positive, got {height} x {width}")
        self.height, self.width = height, width
        self.sum_axes = sum_axes
        self.row_attention = _AxisAttention(dim, num_heads)
        self.column_attention = _AxisAttention(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, w = self.height, self.width
        if n != h * w:
            raise ValueError(f"axial attention was built for a {h} x {w} map ({h * w} tokens), got {n}")
        grid = x.reshape(b, h, w, c)  # (B, H, W, C), row-major tokens
        rows = self.row_attention(grid)  # (B, H, W, C): each row attends within itself
        source = grid if self.sum_axes else rows
        cols = self.column_attention(source.transpose(1, 2)).transpose(1, 2)  # (B, H, W, C)
        out = rows + cols if self.sum_axes else cols
        return out.reshape(b, n, c)  # (B, N, C)
