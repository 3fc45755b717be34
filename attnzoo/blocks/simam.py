"""SimAM: a parameter-free attention from an energy function."""

from __future__ import annotations

import torch
import torch.nn as nn


class SimAM(nn.Module):
    """Simple, parameter-free attention module.

    Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    ICML 2021, https://proceedings.mlr.press/v139/yang21o.html. Each neuron's inverse minimal energy,
    1/e* = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2, with mu and sigma^2 the mean and variance of its
    channel over the other H W - 1 positions (the authors' code, ZjjConan/SimAM: the sum of squared
    deviations divided by n = H W - 1), lambda = 1e-4; the output is x * sigmoid(1/e*). No parameters.
    On a 1 x 1 map n would be 0 (a division by zero in the authors' code, NaN out): attnzoo divides by
    max(n, 1) instead, which gives the gate sigmoid(1/2) there.
    Cost: 0 MACs (every operation is elementwise or a reduction).
    """

    def __init__(self, e_lambda: float = 1e-4):
        super().__init__()
        if e_lambda <= 0:
            raise ValueError(f"e_lambda must be positive, got {e_lambda}")
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(x.shape[2] * x.shape[3] - 1, 1)
        d2 = (x - x.mean((2, 3), keepdim=True)).pow(2)  # (B, C, H, W): (t - mu)^2
        variance = d2.sum((2, 3), keepdim=True) / n  # (B, C, 1, 1)
        inverse_energy = d2 / (4 * (variance + self.e_lambda)) + 0.5
        return x * torch.sigmoid(inverse_energy)
