"""Additive grid attention gate of Attention U-Net."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

INITS = ("kaiming", "default")


class AttentionGate(nn.Module):
    """Attention gate: gates a skip feature map ``x`` with a coarser gating signal ``g``.

    Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
    https://arxiv.org/abs/1804.03999; follows ozan-oktay/Attention-Gated-Networks
    ``models/layers/grid_attention_layer.py`` (GridAttentionBlock2D, mode "concatenation").
    theta: a k x k conv with stride k (k = sub-sample factor 2, no bias) maps x (B, C, H, W) to
    (B, C_int, H/2, W/2); phi: a 1x1 conv (with bias) maps g (B, C_g, H_g, W_g) to C_int, bilinearly resized
    to theta's grid; psi: a 1x1 conv C_int -> 1 (with bias) on ReLU(theta + phi), sigmoid; the map alpha is
    resized bilinearly to H x W, multiplies x, and a 1x1 conv + BN (W) gives the output (B, C, H, W).
    Defaults: C_int = C / 2 (at least 1), sub-sample (2, 2). ``forward(x, g, return_attention=True)``
    returns ``(output, alpha)`` with alpha (B, 1, H, W) in (0, 1), as the reference returns both; by default
    only the gated output. g may have any spatial size (the card uses C_g = 2 C at H/2 x W/2); x must be at
    least as large as the sub-sample factor.

    Initialisation as the official code (``init_weights(m, init_type='kaiming')`` on every child): every
    convolution weight from Kaiming's normal, fan-in mode, gain sqrt(2) (std sqrt(2 / fan_in)); the BatchNorm
    weight from N(1, 0.02) and its bias 0; convolution biases keep PyTorch's default, as the official code
    leaves them. ``init="default"`` keeps PyTorch's default initialisation everywhere.
    Cost: N' (4 C + 1) C_int (theta, psi; N' = floor(H/2) floor(W/2)) + N_g C_g C_int (phi) + N C^2 (W) MACs
    per image at sub-sample (2, 2); with the card's C_int = C/2, C_g = 2C and N_g = N': about 1.75 N C^2,
    linear in N.
    """

    def __init__(self, channels: int, gating_channels: int, inter_channels: int | None = None,
                 sub_sample: int | tuple[int, int] | list[int] = (2, 2), init: str = "kaiming"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got '{init}'")
        factor = (sub_sample, sub_sample) if isinstance(sub_sample, int) else tuple(sub_sample)
        if len(factor) != 2 or any(f < 1 for f in factor):
            raise ValueError(f"sub_sample must be a positive int or a pair of them, got {sub_sample}")
        if channels < 1 or gating_channels < 1:
            raise ValueError(f"channels ({channels}) and gating_channels ({gating_channels}) must be positive")
        inter = max(1, channels // 2) if inter_channels is None else inter_channels
        if inter < 1:
            raise ValueError(f"inter_channels must be positive, got {inter_channels}")
        self.channels = channels
        self.gating_channels = gating_channels
        self.inter_channels = inter
        self.sub_sample = factor
        self.theta = nn.Conv2d(channels, inter, factor, stride=factor, bias=False)
        self.phi = nn.Conv2d(gating_channels, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)
        self.W = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        if init == "kaiming":
            self._init_like_the_official_code()

    @torch.no_grad()
    def _init_like_the_official_code(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, g: torch.Tensor, return_attention: bool = False):
        # x: (B, C, H, W); g: (B, C_g, H_g, W_g)
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected x (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if g.dim() != 4 or g.shape[1] != self.gating_channels or g.shape[0] != x.shape[0]:
            raise ValueError(f"expected g (B={x.shape[0]}, {self.gating_channels}, H_g, W_g), got {tuple(g.shape)}")
        if x.shape[2] < self.sub_sample[0] or x.shape[3] < self.sub_sample[1]:
            raise ValueError(f"x is {x.shape[2]}x{x.shape[3]}, smaller than the sub-sample factor "
                             f"{self.sub_sample[0]}x{self.sub_sample[1]}")
        theta = self.theta(x)  # (B, C_int, H/2, W/2)
        phi = F.interpolate(self.phi(g), size=theta.shape[2:], mode="bilinear",
                            align_corners=False)  # (B, C_int, H/2, W/2)
        alpha = torch.sigmoid(self.psi(torch.relu(theta + phi)))  # (B, 1, H/2, W/2)
        alpha = F.interpolate(alpha, size=x.shape[2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)
        out = self.W(alpha * x)  # (B, C, H, W)
        return (out, alpha) if return_attention else out
