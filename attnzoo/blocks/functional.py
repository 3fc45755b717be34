"""Shared attention arithmetic."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                          dropout_p: float = 0.0, fused: bool = True, need_weights: bool = False):
    """softmax(q k^T * scale) v over the last two dimensions; returns ``(output, weights or None)``.

    ``fused`` uses ``F.scaled_dot_product_attention``, which never materialises the (N, N) weights on
    backends with a fused kernel; the explicit path is taken when the weights are asked for.
    ``scale`` defaults to 1/sqrt(head_dim), as in "Attention Is All You Need".
    """
    if fused and not need_weights:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale), None
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    weights = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)  # (..., Nq, Nk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights
