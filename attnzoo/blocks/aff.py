"""Attentional feature fusion: MS-CAM, AFF and iAFF (Dai et al., WACV 2021)."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.blocks.pooled_norm import check_pooled_batch


def _pointwise_bottleneck(channels: int, hidden: int, pooled: bool) -> nn.Sequential:
    """1x1 conv C -> C/r, BN, ReLU, 1x1 conv C/r -> C, BN; after a global average pool when ``pooled``."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)] if pooled else []
    layers += [nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(),
               nn.Conv2d(hidden, channels, 1), nn.BatchNorm2d(channels)]
    return nn.Sequential(*layers)


def _hidden(channels: int, reduction: int) -> int:
    if channels < 1 or reduction < 1:
        raise ValueError(f"channels ({channels}) and reduction ({reduction}) must be positive")
    return max(1, channels // reduction)


def _check_pair(x: torch.Tensor, y: torch.Tensor, channels: int) -> None:
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"expected inputs (B, {channels}, H, W), got {tuple(x.shape)}")


class MSCAM(nn.Module):
    """Multi-scale channel attention module (MS-CAM).

    Dai et al., "Attentional Feature Fusion", WACV 2021, https://arxiv.org/abs/2009.14082; follows
    YimianDai/open-aff ``aff_pytorch/aff_net/fusion.py``. A local branch (point-wise convs C -> C/r -> C with
    BN, ReLU between, at every position) and a global branch (the same after global average pooling) are
    summed and squashed by a sigmoid into a (B, C, H, W) weight that scales ``x``. r = 4; the hidden width is
    floor(C / r), at least 1. Convolutions keep their biases as the reference does. The global branch
    batch-normalises pooled vectors, so training needs a batch of at least 2 (as in AFF and iAFF).
    Cost: 2 (N + 1) C C' MACs per image, C' = max(1, floor(C / r)) (local branch at N positions, global
    branch once; pooling, sigmoid and scaling are not multiply-adds): linear in N.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.channels = channels
        self.local_att = _pointwise_bottleneck(channels, hidden, pooled=False)
        self.global_att = _pointwise_bottleneck(channels, hidden, pooled=True)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights sigmoid(L(x) + G(x)), shape (B, C, H, W)."""
        check_pooled_batch(x, self.training, "MS-CAM")
        return torch.sigmoid(self.local_att(x) + self.global_att(x))  # (B, C, H, W) + (B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        return x * self.weights(x)


class AFF(nn.Module):
    """Attentional feature fusion (AFF) of two same-shape maps ``x`` and ``y``.

    Dai et al., "Attentional Feature Fusion", WACV 2021, https://arxiv.org/abs/2009.14082; follows
    YimianDai/open-aff ``fusion.py`` (class AFF): w = MS-CAM weights of x + y, output ``2 x w + 2 y (1 - w)``.
    The paper writes ``x w + y (1 - w)``; the factor 2 is the official code's, kept to match it
    (it keeps the output's scale equal to that of x + y when w = 1/2). r = 4.
    Cost: as MS-CAM, 2 (N + 1) C C' MACs per image, C' = max(1, floor(C / r)): linear in N.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.channels = channels
        self.local_att = _pointwise_bottleneck(channels, hidden, pooled=False)
        self.global_att = _pointwise_bottleneck(channels, hidden, pooled=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x, y: (B, C, H, W)
        _check_pair(x, y, self.channels)
        check_pooled_batch(x, self.training, "AFF")
        xa = x + y
        w = torch.sigmoid(self.local_att(xa) + self.global_att(xa))  # (B, C, H, W)
        return 2 * x * w + 2 * y * (1 - w)


class IAFF(nn.Module):
    """Iterative attentional feature fusion (iAFF) of two same-shape maps ``x`` and ``y``.

    Dai et al., "Attentional Feature Fusion", WACV 2021, https://arxiv.org/abs/2009.14082; follows
    YimianDai/open-aff ``fusion.py`` (class iAFF) except in one place. A first MS-CAM on x + y gives w1 and the
    initial integration ``z = x w1 + y (1 - w1)``; a second MS-CAM on z gives w2 and the output
    ``x w2 + y (1 - w2)`` (no factor 2, as the official iAFF). The official code builds ``global_att2`` for
    the second stage but calls ``global_att`` again, so global_att2 is never used: attnzoo follows the paper
    (two independent MS-CAMs) and uses global_att2. ``reuse_global_att=True`` reproduces the official code
    (and then does not create global_att2). r = 4.
    Cost: twice MS-CAM, 4 (N + 1) C C' MACs per image, C' = max(1, floor(C / r)) (the same with
    ``reuse_global_att``, which runs the first global branch twice): linear in N.
    """

    def __init__(self, channels: int, reduction: int = 4, reuse_global_att: bool = False):
        super().__init__()
        hidden = _hidden(channels, reduction)
        self.channels = channels
        self.reuse_global_att = reuse_global_att
        self.local_att = _pointwise_bottleneck(channels, hidden, pooled=False)
        self.global_att = _pointwise_bottleneck(channels, hidden, pooled=True)
        self.local_att2 = _pointwise_bottleneck(channels, hidden, pooled=False)
        self.global_att2 = None if reuse_global_att else _pointwise_bottleneck(channels, hidden, pooled=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x, y: (B, C, H, W)
        _check_pair(x, y, self.channels)
        check_pooled_batch(x, self.training, "iAFF")
        xa = x + y
        w1 = torch.sigmoid(self.local_att(xa) + self.global_att(xa))  # (B, C, H, W)
        z = x * w1 + y * (1 - w1)  # initial integration
        global2 = self.global_att if self.global_att2 is None else self.global_att2
        w2 = torch.sigmoid(self.local_att2(z) + global2(z))  # (B, C, H, W)
        return x * w2 + y * (1 - w2)
