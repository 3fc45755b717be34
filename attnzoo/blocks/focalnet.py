"""FocalNet focal modulation.

Yang, Li, Dai, Gao, "Focal Modulation Networks", NeurIPS 2022, https://arxiv.org/abs/2203.11926.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class FocalModulation(nn.Module):
    """Focal modulation: a query modulated by gated, hierarchical depthwise-convolution contexts.

    FocalNet (NeurIPS 2022), https://arxiv.org/abs/2203.11926, sec. 3.2; follows timm's ``FocalModulation``
    (``timm.models.focalnet``, channels-first port of microsoft/FocalNet). A 1x1 convolution (with bias)
    gives the query q, the context z_0 and L + 1 gates; level l applies a depthwise
    ``focal_factor * l + focal_window`` convolution (no bias) and GELU to z_{l-1}; the global level is GELU
    of the spatial mean of z_L. The modulator ``h(sum_l gate_l z_l)`` (1x1 convolution with bias)
    multiplies q, then a 1x1 projection (with bias). Defaults as FocalNet-T (SRF): focal level 2, window 3,
    factor 2 (kernels 3 and 5), no modulator normalisation, no post-norm.
    Cost: N C (2C + L + 1) + N C sum_l k_l^2 + 2 N C^2 MACs per image, k_l = focal_factor l + focal_window;
    N C (4C + 37) for the defaults: linear in N.
    """

    def __init__(self, channels: int, focal_level: int = 2, focal_window: int = 3, focal_factor: int = 2,
                 normalize_modulator: bool = False, proj_drop: float = 0.0):
        super().__init__()
        if focal_level < 1:
            raise ValueError(f"focal_level must be at least 1, got {focal_level}")
        if focal_window < 1 or focal_window % 2 == 0 or focal_factor < 0 or focal_factor % 2:
            raise ValueError(f"focal_window must be odd and focal_factor even (odd kernels), got "
                             f"{focal_window} and {focal_factor}")
        self.channels = channels
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.f = nn.Conv2d(channels, 2 * channels + focal_level + 1, 1)
        self.focal_layers = nn.ModuleList()
        for level in range(focal_level):
            k = focal_factor * level + focal_window
            self.focal_layers.append(nn.Sequential(
                nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels, bias=False), nn.GELU()))
        self.act = nn.GELU()
        self.h = nn.Conv2d(channels, channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, levels = self.channels, self.focal_level
        q, ctx, gates = self.f(x).split([c, c, levels + 1], dim=1)  # (B, C | C | L+1, H, W)
        modulator = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)  # (B, C, H, W), receptive field growing with the level
            modulator = modulator + ctx * gates[:, level:level + 1]
        ctx_global = self.act(ctx.mean((2, 3), keepdim=True))  # (B, C, 1, 1)
        modulator = modulator + ctx_global * gates[:, levels:]
        if self.normalize_modulator:
            modulator = modulator / (levels + 1)
        return self.proj_drop(self.proj(q * self.h(modulator)))  # (B, C, H, W)
