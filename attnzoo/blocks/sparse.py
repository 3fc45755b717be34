"""Sparse Transformer attention (Child et al. 2019), strided and fixed patterns, over the flattened pixels."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.self_attention import _check_heads

PATTERNS = ("strided", "fixed")


def _as_int(name: str, value: float | int) -> int:
    """Card expressions such as ``N**0.5//1`` evaluate to floats; accept whole numbers."""
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name} must be a whole number, got {value}")
        value = int(value)
    return value


class SparseAttention(nn.Module):
    """Factorised sparse self-attention of the Sparse Transformer, non-causal, over the flattened pixels.

    Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse Transformers", 2019,
    https://arxiv.org/abs/1904.10509 (sec. 4). With stride l (the card uses l = floor(sqrt(N)), which is W
    on a square map, where the strided pattern becomes "the rows around a pixel plus its column"):

    - ``pattern="strided"``: the local set |i - j| <= l plus the strided set (i - j) mod l = 0;
    - ``pattern="fixed"``: the query's own block floor(j / l) = floor(i / l) plus the "summary" positions
      j mod l >= l - c of every block (c = ``summary``, default 1; the paper uses c = 8..32 for l = 128..256).

    The paper's patterns are causal (j <= i) for autoregressive generation; an image block sees the whole
    map, so attnzoo mirrors each set to both sides. Of the paper's three ways to combine the two sets
    (alternating layers, one merged head, separate heads) attnzoo uses the merged head: every head attends
    to the union, each key counted once. The fixed pattern uses the same summary positions in every head.
    Standard multi-head projections (qkv without bias, output projection with bias), scale 1/sqrt(head_dim).
    Cost, with M = ceil(N / l) blocks: 4 N C^2 + 2 N (2l + 1) C + 2 M^2 l C MACs per image (strided), or
    4 N C^2 + 2 M l^2 C + 2 N S C (fixed, S ~ c N / l summary positions): N^1.5 with l ~ sqrt(N). The (N, N)
    weights are only built when asked for.
    """

    def __init__(self, dim: int, num_heads: int = 8, stride: int = 8, pattern: str = "strided", summary: int = 1,
                 qkv_bias: bool = False):
        super().__init__()
        self.head_dim = _check_heads(dim, num_heads)
        stride, summary = _as_int("stride", stride), _as_int("summary", summary)
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got '{pattern}'")
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        if pattern == "fixed" and not 1 <= summary <= stride:
            raise ValueError(f"summary ({summary}) must lie between 1 and the stride ({stride})")
        self.num_heads = num_heads
        self.stride = stride
        self.pattern = pattern
        self.summary = summary
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        q = q * self.scale
        if self.pattern == "strided":
            out, weights = self._strided(q, k, v, return_attention)
        else:
            out, weights = self._fixed(q, k, v, return_attention)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))  # (B, N, C)
        return (out, weights) if return_attention else out

    def _blocks(self, t: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, d) -> (B, heads, M, l, d), zero-padded to M = ceil(N / l) blocks of l positions."""
        n, l = t.shape[2], self.stride
        m = -(-n // l)
        return F.pad(t, (0, 0, 0, m * l - n)).unflatten(2, (m, l))

    def _strided(self, q, k, v, dense: bool):
        b, h, n, d = q.shape
        l, dev = self.stride, q.device
        m = -(-n // l)
        idx = torch.arange(n, device=dev)
        # Local set: key j = i - l + s for s in [0, 2l]; padded sequence, one window per query.
        span = 2 * l + 1
        k_loc = F.pad(k, (0, 0, l, l)).unfold(2, span, 1)  # (B, heads, N, d, 2l+1)
        v_loc = F.pad(v, (0, 0, l, l)).unfold(2, span, 1)  # (B, heads, N, d, 2l+1)
        s_loc = torch.einsum("bhnd,bhnds->bhns", q, k_loc)  # (B, heads, N, 2l+1)
        j_loc = idx[:, None] - l + torch.arange(span, device=dev)  # (N, 2l+1)
        s_loc = s_loc.masked_fill((j_loc < 0) | (j_loc >= n), float("-inf"))
        # Strided set: query i = a*l + r and key j = t*l + r share the residue r; |a - t| <= 1 is local.
        qb, kb, vb = self._blocks(q), self._blocks(k), self._blocks(v)  # (B, heads, M, l, d)
        s_str = torch.einsum("bhard,bhtrd->bhart", qb, kb)  # (B, heads, M, l, M)
        blk = torch.arange(m, device=dev)
        j_str = blk[None, None, :] * l + torch.arange(l, device=dev)[None, :, None]  # (1, l, M): key index
        drop = ((blk[:, None, None] - blk[None, None, :]).abs() <= 1) | (j_str >= n)  # (M, l, M)
        s_str = s_str.masked_fill(drop, float("-inf")).flatten(2, 3)[:, :, :n]  # (B, heads, N, M)
        weights = torch.cat([s_loc, s_str], dim=-1).softmax(dim=-1)  # (B, heads, N, 2l+1+M)
        w_loc, w_str = weights.split([span, m], dim=-1)
        out = torch.einsum("bhns,bhnds->bhnd", w_loc, v_loc)  # (B, heads, N, d)
        w_str = F.pad(w_str, (0, 0, 0, m * l - n)).unflatten(2, (m, l))  # (B, heads, M, l, M)
        out = out + torch.einsum("bhart,bhtrd->bhard", w_str, vb).flatten(2, 3)[:, :, :n]
        if not dense:
            return out, None
        full = q.new_zeros(b, h, n, n + 2 * l)  # scatter into a dense (N, N) map for inspection
        full.scatter_add_(-1, (j_loc + l).expand(b, h, n, span), w_loc)
        j_s = (blk[None, :] * l + (idx % l)[:, None]).clamp(max=n - 1) + l  # (N, M); masked entries are 0
        full.scatter_add_(-1, j_s.expand(b, h, n, m), w_str.flatten(2, 3)[:, :, :n])
        return out, full[..., l:l + n]

    def _fixed(self, q, k, v, dense: bool):
        b, h, n, d = q.shape
        l, dev = self.stride, q.device
        m = -(-n // l)
        idx = torch.arange(n, device=dev)
        # Block set: every query attends to its own block of l positions.
        qb, kb, vb = self._blocks(q), self._blocks(k), self._blocks(v)  # (B, heads, M, l, d)
        s_blk = torch.einsum("bhard,bhasd->bhars", qb, kb)  # (B, heads, M, l, l)
        j_blk = torch.arange(m, device=dev)[:, None] * l + torch.arange(l, device=dev)  # (M, l)
        s_blk = s_blk.masked_fill((j_blk >= n)[:, None, :], float("-inf")).flatten(2, 3)[:, :, :n]  # (B,h,N,l)
        # Summary set: the last c positions of every block, except those of the query's own block.
        summ = idx[idx % l >= l - self.summary]  # (S,)
        s_sum = q @ k[:, :, summ].transpose(-2, -1)  # (B, heads, N, S)
        s_sum = s_sum.masked_fill((idx // l)[:, None] == (summ // l)[None, :], float("-inf"))
        weights = torch.cat([s_blk, s_sum], dim=-1).softmax(dim=-1)  # (B, heads, N, l+S)
        w_blk, w_sum = weights.split([l, summ.numel()], dim=-1)
        w_blk = F.pad(w_blk, (0, 0, 0, m * l - n)).unflatten(2, (m, l))  # (B, heads, M, l, l)
        out = torch.einsum("bhars,bhasd->bhard", w_blk, vb).flatten(2, 3)[:, :, :n]  # (B, heads, N, d)
        out = out + w_sum @ v[:, :, summ]
        if not dense:
            return out, None
        full = q.new_zeros(b, h, n, m * l)
        j_b = ((idx // l) * l)[:, None] + torch.arange(l, device=dev)  # (N, l)
        full.scatter_add_(-1, j_b.expand(b, h, n, l), w_blk.flatten(2, 3)[:, :, :n])
        full[..., summ] += w_sum
        return out, full[..., :n]
