"""Layout adapters between feature maps and token sequences."""

from __future__ import annotations

import torch
import torch.nn as nn


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C), by a permute.

    The first article flattens with a bare ``reshape(B, -1, C)``, which reinterprets the memory of a
    channels-first tensor: each "token" then holds values of several channels at several positions, so the
    attention mixes channels with positions. A permute keeps one token per pixel.
    """
    return x.flatten(2).transpose(1, 2)


def to_feature_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    b, n, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, height, width)


class TokensFromFeatureMap(nn.Module):
    """Runs a token (B, N, C) block on a feature map (B, C, H, W) and returns a feature map.

    Extra keyword arguments reach the block; when it returns ``(output, attention)`` the attention is
    passed through unchanged. A block whose output is not one token per pixel (a class token, say) is
    built with ``per_pixel_output=False`` and its output is returned as tokens.
    """

    def __init__(self, block: nn.Module, per_pixel_output: bool = True):
        super().__init__()
        self.block = block
        self.per_pixel_output = per_pixel_output

    def forward(self, x: torch.Tensor, **kwargs):
        b, c, h, w = x.shape
        out = self.block(to_tokens(x), **kwargs)  # (B, N, C)
        extra = None
        if isinstance(out, tuple):
            out, extra = out
        if self.per_pixel_output:
            out = to_feature_map(out, h, w)  # (B, C', H, W)
        return out if extra is None else (out, extra)


class ForwardWith(nn.Module):
    """Calls a module whose forward wants the input several times or extra keywords.

    ``torch.nn.MultiheadAttention`` as self-attention is ``ForwardWith(mha, repeat=3,
    kwargs={"need_weights": False})``: ``forward(x)`` runs ``mha(x, x, x, need_weights=False)``.
    """

    def __init__(self, block: nn.Module, repeat: int = 1, kwargs: dict | None = None):
        super().__init__()
        self.block = block
        self.repeat = repeat
        self.kwargs = dict(kwargs or {})

    def forward(self, *inputs: torch.Tensor, **kwargs):
        return self.block(*(inputs * self.repeat), **{**self.kwargs, **kwargs})
