"""Plots of how cost grows with input size: log-log curves per block, coloured by family, crossings marked.
The grids, fits and crossovers are pure arithmetic in :mod:`attnzoo.growth`.

``sweep`` is ``profile`` over a grid of shapes plus a fit: each point is measured by
:func:`attnzoo.profiling.runner.profile_one`, the function behind ``profile``, so a sweep measures exactly what
``profile`` does. There is no Python ``sweep`` function: the command (attnzoo.cli.sweep_cmd) plans the grid
and calls these helpers; from Python, ``attnzoo.profile(names, grid_shapes(...))`` and
:func:`attnzoo.growth.fit_rows` do the same.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from attnzoo.errors import ConfigError
from attnzoo.growth import _number, axis_value, crossing_points, shape_of
from attnzoo.columns import BY_NAME


def plot(rows: Sequence[dict[str, Any]], over: str, path: str | os.PathLike,
         metrics: Sequence[str] = ("macs", "fwd_ms", "fwd_peak_mib"), families: dict[str, str] | None = None,
         crossover_results: Sequence[dict[str, Any]] | None = None) -> None:
    """Log-log curves, one panel per metric and one line per block; with ``families`` (block -> family)
    coloured by family, and with ``crossover_results`` (from :func:`crossovers`) the crossings marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variable = {"hw": "N = H x W (positions)", "channels": "C (channels)", "batch": "B (batch)"}[over]
    present = [m for m in metrics if any(_number(r.get(m)) for r in rows)]
    if not present:
        raise ConfigError("nothing to plot: no successful measurement in the sweep")
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4.2), squeeze=False)
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    styles = family_styles(blocks, families, crossover_results[0]["baseline"] if crossover_results else None)
    if styles:
        order = {block: i for i, block in enumerate(blocks)}
        blocks.sort(key=lambda b: (FAMILY_ORDER.index(families[b]) if families.get(b) in FAMILY_ORDER
                                   else len(FAMILY_ORDER), order[b]))
    for ax, metric in zip(axes[0], present):
        for block in blocks:
            pts = sorted((axis_value(shape_of(r), over), _number(r.get(metric))) for r in rows
                         if r["block"] == block and str(r.get("status")) == "ok")
            pts = [(x, y) for x, y in pts if y]
            if pts:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts], **{"marker": "o", "label": block,
                                                                         **styles.get(block, {})})
        if crossover_results:
            mark_crossovers(ax, rows, metric, over, crossover_results, styles)
        ax.set_xlabel(variable)
        ax.set_ylabel(BY_NAME[metric].axis_label if metric in BY_NAME else metric)
        ax.grid(True, which="both", alpha=0.3)
        if not styles:
            ax.legend(fontsize=8)
    fig.suptitle("attnzoo sweep: cost against input size (log-log)" + (
        f"; * where a block becomes cheaper than {crossover_results[0]['baseline']}, x where it turns dearer"
        if crossover_results else ""))
    if styles:  # one legend for the figure, grouped by family
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06 + 0.035 * math.ceil(len(labels) / 4), 1, 1))
    else:
        fig.tight_layout()
    from attnzoo.output import save_figure

    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


#: Families in the order the atlas lists them (the registry's families), each with its colour.
FAMILY_ORDER = ("self-attention", "external", "linear", "axial", "local", "channel", "spatial", "channel+spatial",
                "fusion", "conv")
_FAMILY_COLOURS = dict(zip(FAMILY_ORDER, ("#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#ff7f0e", "#8c564b",
                                          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")))
_LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v")


def family_styles(blocks: Sequence[str], families: dict[str, str] | None,
                  baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """Line styles for the plot: one colour per family, blocks of one family told apart by dash and marker,
    the baseline drawn thicker; labels "block (family)". Empty without ``families``."""
    if not families:
        return {}
    styles: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for block in blocks:
        family = families.get(block, "")
        index = seen[family] = seen.get(family, -1) + 1
        styles[block] = {"color": _FAMILY_COLOURS.get(family, "black"),
                         "linestyle": _LINE_STYLES[index % len(_LINE_STYLES)],
                         "marker": _MARKERS[index % len(_MARKERS)], "markersize": 4,
                         "linewidth": 2.6 if block == baseline else 1.4,
                         "label": f"{block} ({family})" + (" - baseline" if block == baseline else "")}
    return styles


def mark_crossovers(ax: Any, rows: Sequence[dict[str, Any]], metric: str, over: str,
                    results: Sequence[dict[str, Any]], styles: dict[str, dict[str, Any]]) -> list[tuple]:
    """Mark the crossings on one panel: a star where a block becomes cheaper than the baseline, a cross
    where it turns dearer again, each labelled with its x. Returns the points marked."""
    points = crossing_points(rows, metric, over, results)
    for block, x, y, direction in points:
        colour = styles.get(block, {}).get("color", "black")
        ax.plot([x], [y], marker="*" if direction == "cheaper" else "X", markersize=13, color=colour,
                markeredgecolor="black", markeredgewidth=0.7, linestyle="none", zorder=5)
        ax.annotate(f"{round(x):,}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=6.5,
                    color=colour)
    return points
