"""CCNet: criss-cross attention."""

from __future__ import annotations

import torch
import torch.nn as nn


class CrissCrossAttention(nn.Module):
    """Recurrent criss-cross attention.

    Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation", ICCV 2019,
    https://arxiv.org/abs/1811.11721. Queries and keys from 1x1 convolutions C -> C/8, values C -> C (with
    bias). Each pixel attends the H + W - 1 pixels of its row and column: one softmax over the W pixels of
    its row (itself included) and the H - 1 other pixels of its column, exactly as the authors' CUDA
    operator (speedinghzl/CCNet, ``ca_weight``: the column part skips the pixel's own row), and as the
    pure-PyTorch copy in External-Attention-pytorch, which masks the column's diagonal. No scaling of the
    logits. out = gamma * attended + x with gamma starting at 0. ``recurrence`` = 2 applies the same
    module (shared weights) twice, so every pixel gathers context from the whole map (the paper's RCCA).
    Computed axially (row and column contractions), never as an N x N matrix.
    Cost: R B (2 C (C/8) N + C^2 N + N (H + W) (C/8 + C)) MACs, R = recurrence.
    """

    def __init__(self, channels: int, reduction: int = 8, recurrence: int = 2):
        super().__init__()
        inner = channels // reduction if reduction >= 1 else 0
        if inner < 1:
            raise ValueError(f"channels ({channels}) must be at least the reduction ({reduction})")
        if recurrence < 1:
            raise ValueError(f"recurrence must be at least 1, got {recurrence}")
        self.inner = inner
        self.recurrence = recurrence
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """One criss-cross pass (without the residual)."""
        h, w = x.shape[2:]
        q, k, v = self.query(x), self.key(x), self.value(x)  # (B, C', H, W), (B, C', H, W), (B, C, H, W)
        row = torch.einsum("bchw,bchv->bhwv", q, k)  # (B, H, W, W): pixel (h, w) against (h, v)
        col = torch.einsum("bchw,bcgw->bhwg", q, k)  # (B, H, W, H): pixel (h, w) against (g, w)
        own = torch.eye(h, dtype=torch.bool, device=x.device).view(h, 1, h)  # g == h: counted in the row
        col = col.masked_fill(own, float("-inf"))
        weights = torch.softmax(torch.cat([row, col], dim=-1), dim=-1)  # (B, H, W, W + H)
        w_row, w_col = weights.split([w, h], dim=-1)
        out = torch.einsum("bhwv,bchv->bchw", w_row, v)  # (B, C, H, W)
        return out + torch.einsum("bhwg,bcgw->bchw", w_col, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.gamma * self.attend(x) + x
        return x
