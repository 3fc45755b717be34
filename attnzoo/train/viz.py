"""Figures of a run (matplotlib, Agg backend): loss and accuracy curves, and the article's attention maps."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from attnzoo.output import save_figure

MAP_COLUMNS = 3  # the article shows the image and three maps per row


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def log_axis(ax) -> None:
    """A log-scale y axis labelled in plain numbers (0.5, 0.6, 0.7), not 6x10^-1: a loss curve often spans
    less than a decade, where matplotlib's default labels the minor ticks in scientific notation."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def plot_curves(history: Sequence[dict], out_dir: Path, title: str = "") -> list[Path]:
    """``loss.png`` and ``accuracy.png``: train and test per epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    paths = []
    for metric, ylabel in (("loss", "binary cross-entropy"), ("acc", "accuracy")):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], marker="o", label="train")
        ax.plot(epochs, [row[f"test_{metric}"] for row in history], marker="o", label="test")
        if metric == "loss" and all(row[f"{s}_loss"] > 0 for row in history for s in ("train", "test")):
            log_axis(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} {'loss' if metric == 'loss' else 'accuracy'}".strip())
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / ("loss.png" if metric == "loss" else "accuracy.png")
        save_figure(fig, path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def attention_maps(weights: torch.Tensor, n_pixels: int) -> tuple[torch.Tensor, str] | None:
    """Attention weights -> (B, M, N) maps over the pixels and what each map is; None if none is over pixels.

    (B, [heads,] N, N) self-attention: the attention each pixel receives, averaged over the queries, per head.
    (B, [heads,] S, N) or (B, [heads,] N, S) attention to S memory slots: each slot's weights over the pixels.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() < 3 or weights.numel() % (weights.shape[0] * n_pixels):
        return None
    w = weights.detach().float()
    b = w.shape[0]
    if w.shape[-1] == n_pixels and w.shape[-2] == n_pixels:
        return w.mean(dim=-2).reshape(b, -1, n_pixels), "head {i}: attention received"
    if w.shape[-1] == n_pixels:
        return w.reshape(b, -1, n_pixels), "slot {i}"
    if w.shape[-2] == n_pixels:
        return w.transpose(-1, -2).reshape(b, -1, n_pixels), "slot {i}"
    return None


def plot_attention(images: torch.Tensor, features: torch.Tensor, weights: torch.Tensor | None,
                   labels: torch.Tensor, probs: torch.Tensor, path: Path, title: str = "") -> Path:
    """One row per image: the image (with its label and predicted probability), then three maps.

    The maps are the attention weights where the block exposes them over the pixels, else channels 1-3 of
    the block's output (of ConvPart for ``cnn``), as the article shows ``att_out[img_no, i + 1]``.
    """
    plt = _pyplot()
    n, h, w = images.shape[0], features.shape[-2], features.shape[-1]
    maps = attention_maps(weights, h * w) if weights is not None else None
    if maps is not None:
        grids, caption = maps[0].reshape(n, -1, h, w), maps[1]
        first = 0
    else:
        grids, caption = features.detach().float(), "channel {i}"
        first = 1 if features.shape[1] > MAP_COLUMNS else 0
    fig, axes = plt.subplots(n, 1 + MAP_COLUMNS, figsize=(3 * (1 + MAP_COLUMNS), 3 * n), squeeze=False)
    for r in range(n):
        picture = (images[r].detach().float().cpu().permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).numpy()
        ax = axes[r, 0]
        ax.imshow(picture)
        ax.set_title(f"label {int(labels[r])}  p={float(probs[r]):.2f}", fontsize=9)
        for c in range(MAP_COLUMNS):
            ax = axes[r, 1 + c]
            channel = first + c
            if channel < grids.shape[1]:
                ax.imshow(grids[r, channel].cpu().numpy(), cmap="viridis")
                ax.set_title(caption.format(i=channel), fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / n) if title else None)  # room for the title
    save_figure(fig, path, dpi=70)
    plt.close(fig)
    return path
