"""A shared check for blocks that batch-normalise globally pooled (B, C, 1, 1) descriptors."""

from __future__ import annotations

import torch


def check_pooled_batch(x: torch.Tensor, training: bool, block: str) -> None:
    """BatchNorm over pooled descriptors sees one value per channel and sample: training needs B >= 2."""
    if training and x.shape[0] < 2:
        raise ValueError(f"{block} batch-normalises globally pooled descriptors, which needs a batch of at least "
                         f"2 in training mode (got batch {x.shape[0]}); use eval mode or a larger batch")
