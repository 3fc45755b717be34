"""Gather-Excite: the parametric GE-theta+ variant."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.blocks.pooled_norm import check_pooled_batch


class GatherExcite(nn.Module):
    """Gather-Excite, parametric gather with an excite MLP (GE-theta+).

    Hu et al., "Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks", NeurIPS 2018,
    https://arxiv.org/abs/1810.12348. The gather is learned: with the global extent (``extent=0``, the default)
    one depth-wise convolution whose kernel covers the whole ``height x width`` map (no padding, so each channel
    gathers to a single value), followed by BatchNorm; with ``extent=e`` (a power of two) log2(e) depth-wise
    3x3 stride-2 convolutions, each with BatchNorm, ReLU between them. The "+" is the excite MLP of SE:
    1x1 convolutions C -> C/r -> C with biases and ReLU (r = 16), then a sigmoid, brought back to the map's size
    by nearest-neighbour interpolation when the extent is not global. The hidden width is floor(C / r), at least 1
    (timm rounds C / r to the nearest integer). BatchNorm after the gather convolutions
    and the MLP with biases follow timm's ``GatherExcite``. Departure from timm: timm pads the global gather
    convolution by (k - 1) / 2, so its "global" gather is not global (an (H-1) x (W-1) map for even sizes,
    H x W for odd ones); here the
    global gather is global (1 x 1), as the paper describes. The global gather's kernel is fixed by the map
    size given at construction, so the block refuses other sizes at forward; its BatchNorm then sees one value
    per channel and image, so training needs a batch of at least 2.
    Cost (global extent): C H W + 2 C floor(C / r) MACs per image.
    """

    def __init__(self, channels: int, height: int | None = None, width: int | None = None, extent: int = 0,
                 reduction: int = 16):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError("channels and reduction must be positive")
        if extent < 0 or (extent > 0 and (extent < 2 or extent & (extent - 1))):
            raise ValueError(f"extent must be 0 (global) or a power of two >= 2, got {extent}")
        self.extent = extent
        self.size = None
        layers: list[tuple[str, nn.Module]] = []
        if extent == 0:
            if not height or not width or height < 1 or width < 1:
                raise ValueError("the global extent needs the map's height and width (the gather kernel's size)")
            self.size = (height, width)
            layers += [("conv1", nn.Conv2d(channels, channels, (height, width), groups=channels, bias=False)),
                       ("norm1", nn.BatchNorm2d(channels))]
        else:
            steps = int(math.log2(extent))
            for i in range(1, steps + 1):
                layers += [(f"conv{i}", nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels,
                                                  bias=False)),
                           (f"norm{i}", nn.BatchNorm2d(channels))]
                if i < steps:
                    layers.append((f"act{i}", nn.ReLU()))
        self.gather = nn.Sequential()
        for name, layer in layers:
            self.gather.add_module(name, layer)
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        size = tuple(x.shape[-2:])
        if self.size is not None and size != self.size:
            raise ValueError(f"this global gather was built for {self.size[0]}x{self.size[1]} maps, got "
                             f"{size[0]}x{size[1]}")
        if self.size is not None:
            check_pooled_batch(x, self.training, "gather-excite (global extent)")
        gathered = self.gather(x)  # (B, C, 1, 1) global; (B, C, ceil(H/e), ceil(W/e)) otherwise
        excite = self.fc2(torch.relu(self.fc1(gathered)))
        if excite.shape[-2:] != x.shape[-2:]:
            excite = F.interpolate(excite, size=size, mode="nearest")  # (B, C, H, W)
        return x * torch.sigmoid(excite)
