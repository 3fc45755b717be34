"""Deformable convolution v1 and v2 (modulated), on torchvision.ops.deform_conv2d."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torchvision.ops import deform_conv2d


class DeformableConv2d(nn.Module):
    """Deformable convolution, C -> C channels, k x k kernel, stride 1, padding k // 2 (BCHW to BCHW).

    v1: Dai et al., "Deformable Convolutional Networks", ICCV 2017, https://arxiv.org/abs/1703.06211.
    A plain k x k convolution (same kernel, padding and stride as the main one) predicts 2 k^2 offsets
    (dy, dx per kernel tap, torchvision's layout) at every output position; its weights and bias start at
    zero, so the block starts as an ordinary convolution. The main convolution samples the input bilinearly at
    the shifted taps (``torchvision.ops.deform_conv2d``).
    v2 (``modulated=True``): Zhu et al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019,
    https://arxiv.org/abs/1811.11168. A second zero-initialised k x k conv predicts k^2 modulation scalars per
    position, passed through a sigmoid (so they start at 0.5, as in the paper).
    The main weight and bias are initialised as ``nn.Conv2d`` does. Defaults: k = 3, one offset group, bias.
    Cost: N k^2 C^2 (main) + 2 N k^4 C (offsets) [+ N k^4 C (masks)] MACs per image: linear in N. The
    bilinear sampling (about 4 N k^2 C multiply-adds of interpolation weights) is left out: attnzoo's
    counter (and its ``macs`` card formula) counts the contractions only.
    """

    def __init__(self, channels: int, kernel_size: int = 3, modulated: bool = False, bias: bool = True):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive to keep H x W, got {kernel_size}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.modulated = modulated
        taps = kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.offset_conv = nn.Conv2d(channels, 2 * taps, kernel_size, padding=self.padding)
        self.mask_conv = nn.Conv2d(channels, taps, kernel_size, padding=self.padding) if modulated else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        for conv in (self.offset_conv, self.mask_conv):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, return_offsets: bool = False):
        # x: (B, C, H, W)
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected input (B, {self.channels}, H, W), got {tuple(x.shape)}")
        offset = self.offset_conv(x)  # (B, 2 k^2, H, W)
        mask = torch.sigmoid(self.mask_conv(x)) if self.mask_conv is not None else None  # (B, k^2, H, W)
        out = deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)  # (B, C, H, W)
        return (out, offset, mask) if return_offsets else out
