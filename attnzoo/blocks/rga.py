"""Relation-aware global attention (RGA): the spatial (RGA-S) and channel (RGA-C) modules."""

from __future__ import annotations

import torch
import torch.nn as nn


def _embed(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias), BN, ReLU: the reference's embedding functions."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU())


def _score(in_channels: int, down_ratio: int) -> nn.Sequential:
    """The attention-weight network: 1x1 conv in -> in/down, BN, ReLU, 1x1 conv -> 1, BN (no biases)."""
    hidden = max(1, in_channels // down_ratio)
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
                         nn.Conv2d(hidden, 1, 1, bias=False), nn.BatchNorm2d(1))


def _check(channels: int, spatial: int, ratios: tuple[int, ...]) -> None:
    if channels < 1 or spatial < 1:
        raise ValueError(f"channels ({channels}) and spatial = H*W ({spatial}) must be positive")
    if any(r < 1 for r in ratios):
        raise ValueError("cha_ratio, spa_ratio and down_ratio must be positive")


def _check_input(x: torch.Tensor, channels: int, spatial: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] * x.shape[3] != spatial:
        raise ValueError(f"this RGA module was built for C = {channels} and H*W = {spatial} (the relation "
                         f"embeddings have H*W-sized weights), got input {tuple(x.shape)}")


class RGASpatial(nn.Module):
    """Spatial relation-aware global attention (RGA-S).

    Zhang et al., "Relation-Aware Global Attention for Person Re-identification", CVPR 2020,
    https://arxiv.org/abs/1904.02998; follows microsoft/Relation-Aware-Global-Attention-Networks
    ``reid/models/models_utils/rga_modules.py`` (RGA_Module with one of use_spatial / use_channel).
    Defaults cha_ratio = 8, spa_ratio = 8, down_ratio = 8, as the reference. The weights depend on
    N = H*W, so N is fixed at build (``spatial``; the card passes ``"H*W"``); any H x W with that product is
    accepted, another N raises ValueError. Reduced widths are floored at 1 (the reference builds 0-channel
    convs for small C or N).

    theta, phi: 1x1 embeddings C -> C/8 (BN, ReLU); affinity r_ij = theta_i . phi_j (N x N). At each position
    i the relation feature [r_i,: ; r_:,i] (2N channels, in the paper's and the reference's order) is
    embedded 2N -> N/8, concatenated with the channel mean of a third embedding C -> C/8 of x, and mapped
    by 1x1 convs (1 + N/8) -> (1 + N/8)/8 -> 1 with BN to one logit; output sigmoid(logit) * x.
    Cost, with C' = max(1, C // cha_ratio), N' = max(1, N // spa_ratio), h = max(1, (1 + N') // down_ratio):
    3 N C C' (embeddings) + N^2 C' (affinity) + 2 N^2 N' (relation embedding, 2N -> N' at N positions)
    + N (2 + N') h (score network) MACs per image; about 3 N C^2/8 + N^2 C/8 + N^3/4 + N^3/512 at the
    default ratios: cubic in N once N exceeds about C (the relation embedding reads 2N channels at each of
    the N positions).
    """

    def __init__(self, channels: int, spatial: int, cha_ratio: int = 8, spa_ratio: int = 8, down_ratio: int = 8):
        super().__init__()
        _check(channels, spatial, (cha_ratio, spa_ratio, down_ratio))
        self.channels = channels
        self.spatial = spatial
        self.inter_channels = max(1, channels // cha_ratio)
        self.inter_spatial = max(1, spatial // spa_ratio)
        self.theta = _embed(channels, self.inter_channels)
        self.phi = _embed(channels, self.inter_channels)
        self.gx = _embed(channels, self.inter_channels)
        self.gg = _embed(2 * spatial, self.inter_spatial)
        self.score = _score(1 + self.inter_spatial, down_ratio)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, C, H, W)
        _check_input(x, self.channels, self.spatial)
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, C')
        phi = self.phi(x).flatten(2)  # (B, C', N)
        affinity = theta @ phi  # (B, N, N), r_ij
        # at position j: channels [r_j1 .. r_jN] (outgoing) then [r_1j .. r_Nj] (incoming)
        relation = torch.cat([affinity.transpose(1, 2).reshape(b, -1, h, w),
                              affinity.reshape(b, -1, h, w)], dim=1)  # (B, 2N, H, W)
        relation = self.gg(relation)  # (B, N/8, H, W)
        appearance = self.gx(x).mean(1, keepdim=True)  # (B, 1, H, W)
        attn = torch.sigmoid(self.score(torch.cat([appearance, relation], dim=1)))  # (B, 1, H, W)
        out = attn * x
        return (out, attn) if return_attention else out


class RGAChannel(nn.Module):
    """Channel relation-aware global attention (RGA-C).

    Zhang et al., "Relation-Aware Global Attention for Person Re-identification", CVPR 2020,
    https://arxiv.org/abs/1904.02998; follows microsoft/Relation-Aware-Global-Attention-Networks
    ``reid/models/models_utils/rga_modules.py`` (RGA_Module with one of use_spatial / use_channel).
    Defaults cha_ratio = 8, spa_ratio = 8, down_ratio = 8, as the reference. The weights depend on
    N = H*W, so N is fixed at build (``spatial``; the card passes ``"H*W"``); any H x W with that product is
    accepted, another N raises ValueError. Reduced widths are floored at 1 (the reference builds 0-channel
    convs for small C or N).

    The map is read as C nodes of N-dimensional features: theta, phi are 1x1 embeddings N -> N/8 (BN, ReLU)
    applied at each of the C channel positions; affinity r_cd = theta_c . phi_d (C x C). The relation feature
    of channel c, [r_c,: ; r_:,c] (2C), is embedded 2C -> C/8, concatenated with the mean of a third
    embedding N -> N/8 of x, and mapped by 1x1 convs (1 + C/8) -> (1 + C/8)/8 -> 1 with BN to one logit per
    channel; output sigmoid(logit) * x.
    Cost, with N' = max(1, N // spa_ratio), C' = max(1, C // cha_ratio), h = max(1, (1 + C') // down_ratio):
    3 C N N' (the N -> N' embeddings at C positions) + C^2 N' (affinity) + 2 C^2 C' (relation embedding)
    + C (2 + C') h (score network) MACs per image; about 3 N^2 C/8 + N C^2/8 + C^3/4 + C^3/512 at the default
    ratios: quadratic in N at fixed C (linear while N is small against C).
    """

    def __init__(self, channels: int, spatial: int, cha_ratio: int = 8, spa_ratio: int = 8, down_ratio: int = 8):
        super().__init__()
        _check(channels, spatial, (cha_ratio, spa_ratio, down_ratio))
        self.channels = channels
        self.spatial = spatial
        self.inter_channels = max(1, channels // cha_ratio)
        self.inter_spatial = max(1, spatial // spa_ratio)
        self.theta = _embed(spatial, self.inter_spatial)
        self.phi = _embed(spatial, self.inter_spatial)
        self.gx = _embed(spatial, self.inter_spatial)
        self.gg = _embed(2 * channels, self.inter_channels)
        self.score = _score(1 + self.inter_channels, down_ratio)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        # x: (B, C, H, W)
        _check_input(x, self.channels, self.spatial)
        b, c = x.shape[:2]
        xc = x.flatten(2).transpose(1, 2).unsqueeze(-1)  # (B, N, C, 1): N features at C nodes
        theta = self.theta(xc).squeeze(-1).transpose(1, 2)  # (B, C, N')
        phi = self.phi(xc).squeeze(-1)  # (B, N', C)
        affinity = theta @ phi  # (B, C, C), r_cd
        relation = torch.cat([affinity.transpose(1, 2), affinity], dim=1).unsqueeze(-1)  # (B, 2C, C, 1)
        relation = self.gg(relation)  # (B, C/8, C, 1)
        appearance = self.gx(xc).mean(1, keepdim=True)  # (B, 1, C, 1)
        logit = self.score(torch.cat([appearance, relation], dim=1))  # (B, 1, C, 1)
        attn = torch.sigmoid(logit).view(b, c, 1, 1)  # (B, C, 1, 1)
        out = attn * x
        return (out, attn) if return_attention else out
