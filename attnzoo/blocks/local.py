"""Local self-attention over the pixels: Longformer's sliding window and NAT's neighbourhood attention.

Both are token (B, N, C) blocks with multi-head projections; each query attends to a fixed number of keys,
so the cost is linear in N. Written in plain torch (gathers and einsums), without custom kernels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.self_attention import _check_heads


class SlidingWindowAttention(nn.Module):
    """Longformer's sliding-window attention over the flattened pixels (row-major order).

    Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer", 2020,
    https://arxiv.org/abs/2004.05150 (sec. 3.1). Each token attends to the w/2 tokens on each side of it and
    to itself (w + 1 keys), clipped at the ends of the sequence. ``window`` is w and must be even and positive,
    as in the reference code; the default 48 gives 49 keys per query, as many as a 7 x 7 neighbourhood.
    Projections as in the reference: q, k, v with bias (one fused linear here), scale 1/sqrt(head_dim),
    output projection. Longformer's dilated windows and its task-specific global tokens are left out (an
    image has no [CLS]-like token to make global); over a flattened map the window spans about w / (2 W) rows
    above and below but wraps across row ends, which is what the paper's 1-D pattern does to an image.
    Cost: 4 N C^2 + 2 N (w + 1) C MACs per image: linear in N.
    """

    def __init__(self, dim: int, num_heads: int = 8, window: int = 48, qkv_bias: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        if window < 2 or window % 2:
            raise ValueError(f"window must be even and at least 2 (w/2 keys on each side), got {window}")
        self.num_heads = num_heads
        self.window = window
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        half = self.window // 2
        span = 2 * half + 1
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        # Key j = i - half + t for window slot t; pad the sequence so every query has `span` slots.
        k_win = F.pad(k, (0, 0, half, half)).unfold(2, span, 1)  # (B, heads, N, head_dim, span)
        v_win = F.pad(v, (0, 0, half, half)).unfold(2, span, 1)  # (B, heads, N, head_dim, span)
        scores = torch.einsum("bhnd,bhnds->bhns", q * self.scale, k_win)  # (B, heads, N, span)
        pos = torch.arange(n, device=x.device)[:, None] - half + torch.arange(span, device=x.device)  # (N, span)
        outside = (pos < 0) | (pos >= n)
        weights = scores.masked_fill(outside, float("-inf")).softmax(dim=-1)  # (B, heads, N, span)
        out = torch.einsum("bhns,bhnds->bhnd", weights, v_win)  # (B, heads, N, head_dim)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))  # (B, N, C)
        return (out, weights) if return_attention else out


def _window_starts(size: int, kernel: int, device: torch.device) -> torch.Tensor:
    """First index of each position's window: centred, shifted inwards at the borders (NAT)."""
    return (torch.arange(size, device=device) - kernel // 2).clamp(0, size - kernel)  # (size,)


class NeighborhoodAttention(nn.Module):
    """Neighbourhood attention (NAT): each pixel attends to the k x k pixels nearest to it.

    Hassani, Walton, Li, Li, Shi, "Neighborhood Attention Transformer", CVPR 2023,
    https://arxiv.org/abs/2204.07143. The window is centred on the query and, near the borders, shifted to
    stay inside the map, so every query sees exactly k^2 keys (unlike zero-padded SASA windows); NA with
    k = H = W is full self-attention. qkv linear with bias, scale 1/sqrt(head_dim), the paper's relative
    position bias B (a (2k-1) x (2k-1) table per head, indexed by key minus query offset; truncated-normal
    init, std 0.02), output projection. natten >= 0.20 dropped the bias: pass ``rel_pos_bias=False``
    for that. Dilation (DiNAT) is not implemented. Kernel 7 as NAT; it must be odd and the map at least
    k x k (``height`` and ``width`` are fixed at build time, ValueError otherwise). Pure torch: keys and
    values are gathered into (N, k^2) windows, O(N k^2 C) memory.
    Cost: 4 N C^2 + 2 N k^2 C MACs per image: linear in N.
    """

    def __init__(self, dim: int, height: int, width: int, num_heads: int = 8, kernel_size: int = 7,
                 qkv_bias: bool = True, rel_pos_bias: bool = True):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if height < kernel_size or width < kernel_size:
            raise ValueError(f"the map ({height} x {width}) is smaller than the {kernel_size} x {kernel_size} "
                             f"neighbourhood; use a smaller kernel_size")
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.height, self.width = height, width
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if rel_pos_bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
            nn.init.trunc_normal_(self.rpb, std=0.02, a=-2.0, b=2.0)
        else:
            self.register_parameter("rpb", None)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        h, w, k = self.height, self.width, self.kernel_size
        if n != h * w:
            raise ValueError(f"neighbourhood attention was built for a {h} x {w} map ({h * w} tokens), got {n}")
        qkv = self.qkv(x).view(b, h, w, 3, self.num_heads, self.head_dim).permute(3, 0, 4, 1, 2, 5)
        q, key, v = qkv.unbind(0)  # each (B, heads, H, W, head_dim)
        offsets = torch.arange(k, device=x.device)
        rows = _window_starts(h, k, x.device)[:, None] + offsets  # (H, k): key rows of each query row
        cols = _window_starts(w, k, x.device)[:, None] + offsets  # (W, k)
        r_idx, c_idx = rows[:, None, :, None], cols[None, :, None, :]  # broadcast to (H, W, k, k)
        k_win = key[:, :, r_idx, c_idx]  # (B, heads, H, W, k, k, head_dim)
        v_win = v[:, :, r_idx, c_idx]  # (B, heads, H, W, k, k, head_dim)
        scores = torch.einsum("bhyxd,bhyxijd->bhyxij", q * self.scale, k_win)  # (B, heads, H, W, k, k)
        if self.rpb is not None:
            rel_r = rows - torch.arange(h, device=x.device)[:, None] + k - 1  # (H, k) in [0, 2k-2]
            rel_c = cols - torch.arange(w, device=x.device)[:, None] + k - 1  # (W, k)
            scores = scores + self.rpb[:, rel_r[:, None, :, None], rel_c[None, :, None, :]]  # (heads, H, W, k, k)
        weights = scores.flatten(-2).softmax(dim=-1).view_as(scores)  # (B, heads, H, W, k, k)
        out = torch.einsum("bhyxij,bhyxijd->bhyxd", weights, v_win)  # (B, heads, H, W, head_dim)
        out = self.proj(out.permute(0, 2, 3, 1, 4).reshape(b, n, c))  # (B, N, C)
        if return_attention:
            return out, weights.flatten(-2).flatten(2, 3)  # (B, heads, N, k^2)
        return out

