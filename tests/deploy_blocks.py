"""Blocks for tests/test_deploy.py that no exporter can take: a failure of export must be a row, naming the
operator, and the run must go on."""

from __future__ import annotations

import torch
import torch.nn as nn


class QRGate(nn.Module):
    """Gates the channels by the diagonal of R in a QR decomposition of each map (aten::linalg_qr has no ONNX
    operator)."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = self.proj(x)  # (B, C, H, W)
        r = torch.linalg.qr(y.flatten(2).transpose(1, 2)).R  # (B, C, C)
        gate = torch.sigmoid(torch.diagonal(r, dim1=1, dim2=2))  # (B, C)
        return x * gate[:, :, None, None]
