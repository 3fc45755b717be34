"""EPSANet's pyramid split attention (PSA module)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class SEWeight(nn.Module):
    """SE weights of one branch: global mean, 1x1 conv C -> C/r, ReLU, 1x1 conv C/r -> C, sigmoid."""

    def __init__(self, channels: int, reduction: int, bias: bool = True):
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))  # (B, C, 1, 1)


class EPSA(nn.Module):
    """Pyramid split attention (the PSA module of EPSANet), kernels 3, 5, 7, 9 with groups 1, 4, 8, 16.

    Zhang et al., "EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network",
    ACCV 2022, https://arxiv.org/abs/2105.14447. S = 4 branches, one per kernel: branch i is a k_i x k_i
    convolution (group count G_i, no bias) producing C/S channels; SE weights (reduction 16, biases) of each
    branch's output, softmaxed across the S branches per channel, weight the branches, which are concatenated
    back to C channels. Defaults follow the official code (murufeng/EPSANet ``PSAModule``): every branch
    convolves the whole input (C -> C/S) and the four branches share one SE module. The paper's text splits the
    input into S parts first: ``split_input=True`` does that (branch i convolves part i, C/S -> C/S);
    ``shared_se=False`` gives each branch its own SE. The official code concatenates the branches in reverse
    order (9x9 first); here branch 1 (3x3) comes first. Every convolution is a registered submodule:
    External-Attention-pytorch's ``PSA`` keeps its convolutions and SE blocks in plain Python lists, so they are
    missing from ``parameters()`` and ``state_dict()``, are not trained by an optimiser built from
    ``parameters()`` and are not moved by ``.to()``; it also writes the branch outputs into its input tensor.
    Cost (default kernels and groups): H W (C/4) (9 C + 25 C/4 + 49 C/8 + 81 C/16) + 8 (C/4) ((C/4) / r) MACs
    per image.
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 groups: Sequence[int] = (1, 4, 8, 16), reduction: int = 16, split_input: bool = False,
                 shared_se: bool = True, conv_bias: bool = False, se_bias: bool = True):
        super().__init__()
        kernel_sizes, groups = tuple(kernel_sizes), tuple(groups)
        if not kernel_sizes or len(kernel_sizes) != len(groups):
            raise ValueError(f"kernel_sizes {kernel_sizes} and groups {groups} must be non-empty and of one length")
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd and positive, got {kernel_sizes}")
        branches = len(kernel_sizes)
        if channels < 1 or reduction < 1 or channels % branches:
            raise ValueError(f"channels ({channels}) must be a positive multiple of the number of kernel_sizes "
                             f"({branches})")
        width = channels // branches
        in_width = width if split_input else channels
        for g in groups:
            if g < 1 or in_width % g or width % g:
                raise ValueError(f"groups {g} must divide the branch's input ({in_width}) and output ({width}) "
                                 f"channels (channels = {channels})")
        if width // reduction < 1:
            raise ValueError(f"channels ({channels}) / {branches} branches must be at least the reduction "
                             f"({reduction})")
        self.split_input = split_input
        self.convs = nn.ModuleList(nn.Conv2d(in_width, width, k, padding=k // 2, groups=g, bias=conv_bias)
                                   for k, g in zip(kernel_sizes, groups))
        count = 1 if shared_se else branches
        self.se = nn.ModuleList(SEWeight(width, reduction, se_bias) for _ in range(count))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, c, h, w = x.shape
        parts = x.chunk(len(self.convs), dim=1) if self.split_input else [x] * len(self.convs)
        feats = torch.stack([conv(p) for conv, p in zip(self.convs, parts)], dim=1)  # (B, S, C/S, H, W)
        se = [self.se[i % len(self.se)](feats[:, i]) for i in range(feats.shape[1])]
        attn = torch.stack(se, dim=1).softmax(1)  # (B, S, C/S, 1, 1), sums to 1 over the S branches
        out = (feats * attn).reshape(b, c, h, w)
        return (out, attn) if return_attention else out
