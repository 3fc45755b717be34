"""The article's network: ConvPart, then any registry block, then a mean over H and W and Linear(32, 1).

The block is built through attnzoo's registry and ``build_module`` for a (B, 32, 24, 24) feature map; the
name ``cnn`` means no block (the article's plain ``Net``).
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.errors import ConfigError, ShapeError

NO_BLOCK = "cnn"
CHANNELS = 32
FEATURE_SIZE = 24  # 96 after two 2x max pools


class ConvPart(nn.Module):
    """The article's feature extractor: three 5x5 convolutions 3 -> 32 -> 32 -> 32 (padding 2).

    conv, leaky ReLU, batch norm, 2x max pool; again; then a last convolution. (B, 3, 96, 96) -> (B, 32, 24, 24).
    """

    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.c1a = nn.Conv2d(3, channels, 5, padding=2)
        self.p1 = nn.MaxPool2d(2)
        self.c2a = nn.Conv2d(channels, channels, 5, padding=2)
        self.p2 = nn.MaxPool2d(2)
        self.c3 = nn.Conv2d(channels, channels, 5, padding=2)
        self.bn1a = nn.BatchNorm2d(channels)
        self.bn2a = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.p1(self.bn1a(F.leaky_relu(self.c1a(x))))  # (B, 32, 48, 48)
        z = self.p2(self.bn2a(F.leaky_relu(self.c2a(z))))  # (B, 32, 24, 24)
        return self.c3(z)  # (B, 32, 24, 24)


def exposes_attention(block: nn.Module | None) -> bool:
    """Whether ``block`` takes ``return_attention`` (looking through the token adapter)."""
    if block is None:
        return False
    inner = getattr(block, "block", block)
    try:
        return "return_attention" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


class PatchNet(nn.Module):
    """ConvPart -> block (or nothing) -> mean over H, W -> Linear(32, 1). ``forward`` returns logits (B,).

    The article applies a sigmoid and a hand-written binary cross-entropy; attnzoo returns the logit and
    trains with ``binary_cross_entropy_with_logits``, the same loss computed stably. ``torch.sigmoid`` of
    the output is the article's probability.
    """

    def __init__(self, block: nn.Module | None = None, name: str = NO_BLOCK, channels: int = CHANNELS):
        super().__init__()
        self.name = name
        self.conv = ConvPart(channels)
        self.block = block
        self.final = nn.Linear(channels, 1)

    def features(self, x: torch.Tensor, return_attention: bool = False):
        """The block's output (B, 32, 24, 24) and, when asked and exposed, its attention weights (else None)."""
        z = self.conv(x)
        if self.block is None:
            return z, None
        if return_attention and exposes_attention(self.block):
            out, weights = self.block(z, return_attention=True)
            return out, weights
        return self.block(z), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, _ = self.features(x)
        return self.final(q.mean(dim=(2, 3)))[:, 0]  # (B,)


def build_block(name: str, overrides: dict[str, Any] | None = None, registry: Sequence[str] = (),
                batch: int = 2) -> nn.Module | None:
    """The registry block ``name`` built for (batch, 32, 24, 24), checked to map that shape to itself."""
    if name == NO_BLOCK:
        if overrides:
            raise ConfigError(f"'{NO_BLOCK}' has no block to pass {', '.join(sorted(overrides))} to")
        return None
    from attnzoo.build import build_module
    from attnzoo.registry import get_spec

    spec = get_spec(name, registry)
    if spec.inputs != 1:
        raise ConfigError(f"{name} fuses {spec.inputs} inputs; the white-patch task needs a one-input block")
    shape = (batch, CHANNELS, FEATURE_SIZE, FEATURE_SIZE)
    block = build_module(spec, shape, overrides)
    probe = torch.randn(2, CHANNELS, FEATURE_SIZE, FEATURE_SIZE)
    block.eval()
    try:
        with torch.no_grad():
            out = block(probe)
    except (RuntimeError, ValueError) as exc:
        raise ShapeError(f"{name} cannot take a 32-channel 24x24 feature map: {str(exc).splitlines()[0]}") from None
    finally:
        block.train()
    if isinstance(out, tuple):
        out = out[0]
    if tuple(out.shape) != tuple(probe.shape):
        raise ShapeError(f"{name} maps (B,32,24,24) to (B,{','.join(str(d) for d in out.shape[1:])}); "
                         "the task needs a block that keeps the feature map's shape")
    return block


def build_model(name: str, overrides: dict[str, Any] | None = None, registry: Sequence[str] = (),
                seed: int = 0, batch: int = 2) -> PatchNet:
    """The network for block ``name``. ConvPart, the head and the block are seeded separately, so every
    block of a comparison starts from the same ConvPart and head weights."""
    torch.manual_seed(seed + 2)
    block = build_block(name, overrides, registry, batch)
    torch.manual_seed(seed)
    model = PatchNet(None, name)
    torch.manual_seed(seed + 1)
    model.final.reset_parameters()
    model.block = block
    return model


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())
