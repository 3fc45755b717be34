"""Contextual Transformer (CoT) block."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.pooled_norm import check_pooled_batch


class ContextualTransformer(nn.Module):
    """Contextual Transformer block (CoT), kernel 3.

    Li et al., "Contextual Transformer Networks for Visual Recognition", TPAMI 2022,
    https://arxiv.org/abs/2107.12292. Follows the authors' ``CotLayer`` (JDAI-CV/CoTNet models/cotnet.py).
    Static context: a k x k convolution in 4 groups (no bias), BatchNorm, ReLU gives the keys K1. The
    concatenation [x, K1] goes through 1x1 conv 2C -> C/2 (BatchNorm, ReLU) and 1x1 conv C/2 -> k^2 C/8 with
    bias, then GroupNorm (C/8 groups): a local attention matrix, k^2 weights per pixel for each of C/8 weight
    channels (channel c uses weight channel c mod C/8). The values (1x1 conv, BatchNorm) are aggregated over
    each pixel's zero-padded k x k window with those weights (the official code's CUDA ``LocalConvolution``,
    written here with unfold and an einsum), then BatchNorm and swish give the dynamic context K2. Static and
    dynamic contexts are fused as in split attention: summed, pooled, 1x1 conv C -> max(C/2, 32) with bias,
    BatchNorm, ReLU, 1x1 conv -> 2C, softmax over the two per channel (training needs a batch of at least 2 for
    that BatchNorm). External-Attention-pytorch's
    ``CoTAttention`` is a different layer: it averages the k^2 attention logits, softmaxes them over all pixels,
    multiplies the values elementwise (no window aggregation) and adds K1 with no fusion.
    Cost: H W (C (C/4) k^2 + 2 C (C/2) + C^2 + (C/2) k^2 (C/8) + C k^2) + 3 C max(C/2, 32) MACs per image.
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        if channels < 8 or channels % 8:
            raise ValueError(f"channels ({channels}) must be a positive multiple of 8 (4 key groups, weights "
                             "shared by 8 channels)")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.weight_channels = channels // 8
        k2 = kernel_size * kernel_size
        self.key_conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=4, bias=False)
        self.key_bn = nn.BatchNorm2d(channels)
        self.embed1 = nn.Conv2d(2 * channels, channels // 2, 1, bias=False)
        self.embed_bn = nn.BatchNorm2d(channels // 2)
        self.embed2 = nn.Conv2d(channels // 2, k2 * self.weight_channels, 1)
        self.embed_gn = nn.GroupNorm(self.weight_channels, k2 * self.weight_channels)
        self.value_conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.value_bn = nn.BatchNorm2d(channels)
        self.bn = nn.BatchNorm2d(channels)
        attn = max(channels // 2, 32)
        self.fuse1 = nn.Conv2d(channels, attn, 1)
        self.fuse_bn = nn.BatchNorm2d(attn)
        self.fuse2 = nn.Conv2d(attn, 2 * channels, 1)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        check_pooled_batch(x, self.training, "CoT")
        b, c, h, w = x.shape
        k2, wc = self.kernel_size ** 2, self.weight_channels
        keys = torch.relu(self.key_bn(self.key_conv(x)))  # (B, C, H, W): static context K1
        local = torch.relu(self.embed_bn(self.embed1(torch.cat([x, keys], dim=1))))  # (B, C/2, H, W)
        local = self.embed_gn(self.embed2(local)).view(b, wc, k2, h * w)  # (B, C/8, k^2, N)
        values = self.value_bn(self.value_conv(x))  # (B, C, H, W)
        windows = F.unfold(values, self.kernel_size, padding=self.kernel_size // 2)  # (B, C k^2, N)
        windows = windows.view(b, c // wc, wc, k2, h * w)  # channel c = s * C/8 + (c mod C/8)
        dynamic = torch.einsum("bsjkn,bjkn->bsjn", windows, local).reshape(b, c, h, w)
        dynamic = F.silu(self.bn(dynamic))  # (B, C, H, W): dynamic context K2
        contexts = torch.stack([dynamic, keys], dim=2)  # (B, C, 2, H, W)
        pooled = contexts.sum(2).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        logits = self.fuse2(torch.relu(self.fuse_bn(self.fuse1(pooled))))  # (B, 2C, 1, 1)
        weights = logits.view(b, c, 2).softmax(-1)  # (B, C, 2)
        out = (contexts * weights.view(b, c, 2, 1, 1)).sum(2)
        return (out, local) if return_attention else out
