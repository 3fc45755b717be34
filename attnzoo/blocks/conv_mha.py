"""The first article's multi-head attention built from 1-D (1x1) convolutions."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.functional import dot_product_attention


def _layer_norm_channels(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    # LayerNorm normalises the last dimension; here the channels are dimension 1 of (B, C, N).
    return norm(x.transpose(1, 2)).transpose(1, 2)


class ConvMultiHeadAttention(nn.Module):
    """1-D-convolution multi-head self-attention over the pixels, from the first article (Javier Fernandez).

    "Attention in computer vision", Chinese translation: https://wpsshop.cn/w/知新_RL/article/detail/351239

    Each head has its own 1x1-convolution query, key and value (with bias); the heads' outputs are
    concatenated, projected down to ``channels`` by a 1x1 convolution, added to the input and normalised
    (LayerNorm over channels), then a two-layer 1x1 mixing block with ReLU, a residual and a second
    LayerNorm. Scores are scaled by 1/sqrt(key_size) and normalised over the keys.

    Departures from the article's code, which has two bugs: ``super()`` names a class that does not exist
    (``MultiheadAttentionModified``), and the output is reshaped with ``query.size(3)`` twice (width for
    height), which breaks on non-square maps. The per-head convolutions are held as one convolution with
    ``num_heads * key_size`` outputs, which has the same parameters and arithmetic. The article's
    broadcast-and-sum attention (B x key_size x N x N memory) is scaled dot-product attention per head, so
    it runs through the fused kernel (``fused=True``, no N x N weights held); the explicit path computes
    the weights when they are asked for (``return_attention=True``) or with ``fused=False``.
    Cost: 2 N C h (k + v) + 2 N C^2 + N^2 h (k + v) MACs per image (h heads, k = key_size, v = output_size).
    """

    def __init__(self, channels: int = 32, key_size: int = 32, output_size: int = 32, num_heads: int = 4,
                 fused: bool = True):
        super().__init__()
        if min(channels, key_size, output_size, num_heads) < 1:
            raise ValueError("channels, key_size, output_size and num_heads must be positive")
        self.num_heads, self.key_size, self.output_size = num_heads, key_size, output_size
        self.fused = fused
        self.query = nn.Conv1d(channels, num_heads * key_size, 1)
        self.key = nn.Conv1d(channels, num_heads * key_size, 1)
        self.value = nn.Conv1d(channels, num_heads * output_size, 1)
        self.proj_down = nn.Conv1d(num_heads * output_size, channels, 1)
        self.mixing_layer1 = nn.Conv1d(channels, channels, 1)
        self.mixing_layer2 = nn.Conv1d(channels, channels, 1)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        shape = x.shape
        b, c = shape[0], shape[1]
        x = x.reshape(b, c, -1)  # (B, C, N): channels-first flattening keeps one column per pixel
        n = x.shape[-1]
        q = self.query(x).view(b, self.num_heads, self.key_size, n).transpose(2, 3)  # (B, heads, N, k)
        k = self.key(x).view(b, self.num_heads, self.key_size, n).transpose(2, 3)
        v = self.value(x).view(b, self.num_heads, self.output_size, n).transpose(2, 3)  # (B, heads, N, v)
        # softmax over the keys with scale 1/sqrt(key_size), as the article's softmax(dim=1) on (B, Nk, Nq)
        out, weights = dot_product_attention(q, k, v, fused=self.fused, need_weights=return_attention)
        heads = out.transpose(2, 3).reshape(b, self.num_heads * self.output_size, n)  # (B, h*v, N)
        z = _layer_norm_channels(self.norm1, self.proj_down(heads) + x)
        z = _layer_norm_channels(self.norm2, self.mixing_layer2(F.relu(self.mixing_layer1(z))) + z)
        out = z.reshape(shape)
        return (out, weights) if return_attention else out
