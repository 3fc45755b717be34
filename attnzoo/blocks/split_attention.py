"""Split attention (ResNeSt): a convolution whose radix splits are mixed by a softmax over the splits."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.pooled_norm import check_pooled_batch


class SplitAttention(nn.Module):
    """Split-Attention convolution (Splat), radix 2 and cardinality 1 by default.

    Zhang et al., "ResNeSt: Split-Attention Networks", CVPR Workshops 2022, https://arxiv.org/abs/2004.08955.
    Follows the authors' ``SplAtConv2d`` (zhanghang1989/ResNeSt) as ResNeSt uses it: a k x k convolution
    C -> radix*C in radix*cardinality groups, no bias, BatchNorm, ReLU; the radix splits are summed, pooled
    globally and sent through 1x1 convolutions C -> d -> radix*C (cardinality groups, biases, BatchNorm and ReLU
    between), with d = max(radix*C / reduction, 32), reduction 4; a softmax across the radix splits (sigmoid
    when radix is 1) weights the splits, which are summed. timm's ``SplitAttn`` is the same layer without the
    BatchNorms by default (ResNeSt passes them) and with d rounded to a multiple of 8. Training needs a batch of
    at least 2 (BatchNorm of the pooled descriptor).
    Cost: N radix C (C / (radix cardinality)) k^2 + (C / cardinality) d + radix C (d / cardinality) MACs per image.
    """

    def __init__(self, channels: int, kernel_size: int = 3, radix: int = 2, cardinality: int = 1,
                 reduction: int = 4):
        super().__init__()
        if min(channels, radix, cardinality, reduction) < 1:
            raise ValueError("channels, radix, cardinality and reduction must be positive")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if channels % (radix * cardinality):
            raise ValueError(f"channels ({channels}) must be divisible by radix * cardinality "
                             f"({radix} * {cardinality})")
        attn = max(channels * radix // reduction, 32)
        if attn % cardinality:
            raise ValueError(f"the attention width ({attn}) must be divisible by cardinality ({cardinality})")
        self.radix, self.cardinality, self.attn_channels = radix, cardinality, attn
        self.conv = nn.Conv2d(channels, radix * channels, kernel_size, padding=kernel_size // 2,
                              groups=radix * cardinality, bias=False)
        self.bn0 = nn.BatchNorm2d(radix * channels)
        self.fc1 = nn.Conv2d(channels, attn, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(attn)
        self.fc2 = nn.Conv2d(attn, radix * channels, 1, groups=cardinality)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        check_pooled_batch(x, self.training, "split attention")
        b, c, h, w = x.shape
        splits = torch.relu(self.bn0(self.conv(x))).view(b, self.radix, c, h, w)  # (B, radix, C, H, W)
        pooled = splits.sum(1).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        logits = self.fc2(torch.relu(self.bn1(self.fc1(pooled))))  # (B, radix*C, 1, 1), cardinal groups first
        logits = logits.view(b, self.cardinality, self.radix, c // self.cardinality)
        if self.radix > 1:
            attn = logits.softmax(2).transpose(1, 2).reshape(b, self.radix, c, 1, 1)  # (B, radix, C, 1, 1)
        else:
            attn = torch.sigmoid(logits).reshape(b, 1, c, 1, 1)
        out = (splits * attn).sum(1)  # (B, C, H, W)
        return (out, attn) if return_attention else out
