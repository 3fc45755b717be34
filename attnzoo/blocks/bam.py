"""BAM: Bottleneck Attention Module."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.pooled_norm import check_pooled_batch

COMBINE = ("add", "mul")


class BAM(nn.Module):
    """Bottleneck Attention Module.

    Park et al., "BAM: Bottleneck Attention Module", BMVC 2018, https://arxiv.org/abs/1807.06514.
    Two parallel branches. Channel: global average pool, FC C -> C/r, BN, ReLU, FC C/r -> C, giving
    Mc (B, C, 1, 1). Spatial: 1x1 conv C -> C/r, BN, ReLU, two 3x3 convs with dilation 4 (each BN, ReLU),
    1x1 conv C/r -> 1, giving Ms (B, 1, H, W). Output ``x * (1 + sigmoid(Mc + Ms))``.

    The paper adds the two branches (Mc + Ms, broadcast to C x H x W); the official code
    (Jongchan/attention-module ``MODELS/bam.py``) multiplies them. attnzoo follows the paper and adds;
    ``combine="mul"`` gives the official code's product. The layer layout (BN after each hidden layer, plain
    final FC / conv) is the official code's. The official channel gate pools with a kernel of size H, which
    breaks on non-square maps; here the pool is a mean over H and W, so any H x W works. Training needs a
    batch of at least 2 (BatchNorm of the pooled vector); eval mode takes any batch.
    Defaults: r = 16, dilation 4, two dilated convs; hidden width floor(C / r), at least 1.
    Cost: 2 C C' + N (C + 1) C' + 18 N C'^2 MACs per image, C' = max(1, floor(C / r)) (9 N C'^2 per dilated
    conv, two of them): linear in N.
    """

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4, num_dilated: int = 2,
                 combine: str = "add"):
        super().__init__()
        if channels < 1 or reduction < 1 or dilation < 1 or num_dilated < 0:
            raise ValueError("channels, reduction and dilation must be positive, num_dilated non-negative")
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {', '.join(COMBINE)}, got '{combine}'")
        hidden = max(1, channels // reduction)
        self.combine = combine
        self.channel_gate = nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                          nn.Linear(hidden, channels))
        spatial: list[nn.Module] = [nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU()]
        for _ in range(num_dilated):
            spatial += [nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                        nn.BatchNorm2d(hidden), nn.ReLU()]
        spatial.append(nn.Conv2d(hidden, 1, 1))
        self.spatial_gate = nn.Sequential(*spatial)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map sigmoid(Mc (+ or *) Ms), shape (B, C, H, W)."""
        check_pooled_batch(x, self.training, "BAM")
        mc = self.channel_gate(x.mean((2, 3)))[:, :, None, None]  # (B, C, 1, 1)
        ms = self.spatial_gate(x)  # (B, 1, H, W)
        return torch.sigmoid(mc + ms if self.combine == "add" else mc * ms)  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        return x * (1 + self.attention(x))
