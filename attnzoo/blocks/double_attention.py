"""A^2 double attention: gather global descriptors, distribute them to every position."""

from __future__ import annotations

import torch
import torch.nn as nn


class DoubleAttention(nn.Module):
    """Double attention block (A^2), c_m = c_n = C/4 by default.

    Chen et al., "A^2-Nets: Double Attention Networks", NeurIPS 2018, https://arxiv.org/abs/1810.11579.
    Three 1x1 convolutions (with biases) give features A (c_m channels), attention maps B and attention vectors
    V (c_n channels each). Gather: each of the c_n maps, softmaxed over the H W positions, pools A into one
    of c_n global descriptors (c_m x c_n). Distribute: at each position the softmax of V over its c_n channels
    mixes the descriptors. A 1x1 convolution c_m -> C brings the result back to C channels; as the paper inserts
    the block into residual units, it is added to the input (``residual=False`` returns it alone, as
    External-Attention-pytorch does).
    Departure from External-Attention-pytorch's ``DoubleAttention``: it calls softmax without a dimension on
    3-D tensors, which PyTorch then takes over the batch; here the softmaxes are over the positions (gather) and
    the c_n channels (distribute) as the paper says.
    Cost: H W (C c_m + 2 C c_n + c_m C + 2 c_m c_n) MACs per image.
    """

    def __init__(self, channels: int, c_m: int | None = None, c_n: int | None = None, residual: bool = True):
        super().__init__()
        c_m = channels // 4 if c_m is None else c_m
        c_n = channels // 4 if c_n is None else c_n
        if channels < 1 or c_m < 1 or c_n < 1:
            raise ValueError(f"channels ({channels}), c_m ({c_m}) and c_n ({c_n}) must be positive "
                             "(c_m and c_n default to channels // 4)")
        self.c_m, self.c_n, self.residual = c_m, c_n, residual
        self.conv_a = nn.Conv2d(channels, c_m, 1)
        self.conv_b = nn.Conv2d(channels, c_n, 1)
        self.conv_v = nn.Conv2d(channels, c_n, 1)
        self.conv_out = nn.Conv2d(c_m, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        feats = self.conv_a(x).flatten(2)  # (B, c_m, N)
        maps = self.conv_b(x).flatten(2).softmax(-1)  # (B, c_n, N), each map sums to 1 over N
        vectors = self.conv_v(x).flatten(2).softmax(1)  # (B, c_n, N), each position sums to 1 over c_n
        descriptors = torch.bmm(feats, maps.transpose(1, 2))  # (B, c_m, c_n)
        z = torch.bmm(descriptors, vectors).view(b, self.c_m, h, w)  # (B, c_m, H, W)
        out = self.conv_out(z)  # (B, C, H, W)
        return x + out if self.residual else out
