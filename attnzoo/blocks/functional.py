"""Shared attention arithmetic."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its last dimension has stride 1, else a contiguous copy.

    Every fused kernel of ``F.scaled_dot_product_attention`` (the CPU flash kernel, CUDA's flash and
    memory-efficient kernels) needs stride 1 along the head dimension; without it SDPA silently falls back
    to its unfused "math" backend, which is slower than the explicit path. Token views of a feature map
    (``x.flatten(2).transpose(1, 2)``) have stride N there.
    """
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                          dropout_p: float = 0.0, fused: bool = True, need_weights: bool = False):
    """softmax(q k^T * scale) v over the last two dimensions; returns ``(output, weights or None)``.

    ``fused`` uses ``F.scaled_dot_product_attention``, which never materialises the (N, N) weights on
    backends with a fused kernel; the explicit path is taken when the weights are asked for.
    ``scale`` defaults to 1/sqrt(head_dim), as in "Attention Is All You Need".
    """
    if fused and not need_weights:
        same_kv, same_qk = v is k, k is q
        q = _last_dim_contiguous(q)  # one copy when q, k and v are one tensor (parameter-free attention)
        k = q if same_qk else _last_dim_contiguous(k)
        v = k if same_kv else _last_dim_contiguous(v)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale), None
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    weights = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)  # (..., Nq, Nk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights
