"""The rows of ``attnzoo train --compare`` (OUT/runs.csv: one per block and seed) read back: curves, the
summary over seeds, the Pareto front of cost against loss. Shared by train, report and compare; never imports
torch.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Mapping, Sequence

#: The first article's results (50 epochs, STL10 images 0-3999 for training, 4000-4999 for testing).
ARTICLE = {
    "cnn": {"min_train_loss": 0.0011167, "min_test_loss": 0.054120},
    "mha": {"min_train_loss": 9.8116e-06, "min_test_loss": 0.042092},
    "conv-mha": {"min_train_loss": 0.00025470, "min_test_loss": 0.014278},
    "cbam": {"min_train_loss": 2.7868e-05, "min_test_loss": 0.028048},
}
#: One row per (block, seed), in this order.
RUN_COLUMNS = ("block", "family", "seed", "status", "shape", "params", "block_params", "macs", "fwd_ms", "epochs",
               "min_train_loss", "min_test_loss", "last_test_loss", "best_test_acc", "epochs_to_target",
               "wall_s", "img_per_s", "dataset", "difficulty", "train_size", "test_size", "batch_size", "lr",
               "target_loss", "last_epochs", "overrides", "device", "torch", "timestamp", "test_loss_curve",
               "train_loss_curve", "test_acc_curve", "unit_id", "host", "node", "device_index")
#: One row per block: the mean over its seeds (``*_std`` the sample standard deviation) and its cost.
SUMMARY_COLUMNS = ("block", "family", "seeds", "params", "block_params", "macs", "fwd_ms", "min_test_loss",
                   "min_test_loss_std", "last_test_loss", "last_test_loss_std", "best_test_acc", "best_test_acc_std",
                   "epochs_to_target", "reached_target", "article_min_test_loss")
def curve_text(values: Iterable[float]) -> str:
    return " ".join(f"{v:.5g}" for v in values)


def parse_curve(text: Any) -> list[float]:
    """A curve cell back to numbers ("" or None: no epochs)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    if isinstance(text, (int, float)):
        return [float(text)]
    return [float(v) for v in str(text).split()]


def derived(test_loss: Sequence[float], target: float, last: int) -> dict[str, Any]:
    """The figures a row derives from its test-loss curve: minimum, mean of the last epochs, epochs to target."""
    reached = next((i + 1 for i, v in enumerate(test_loss) if v <= target), None)
    tail = test_loss[-last:]
    return {"min_test_loss": min(test_loss) if test_loss else None,
            "last_test_loss": sum(tail) / len(tail) if tail else None,
            "epochs_to_target": reached}


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def join_cost(row: dict[str, Any], profile_row: Mapping[str, Any] | None, no_block: bool = False) -> dict[str, Any]:
    """``row`` (a training run) with its block's cost from ``profile_row`` (the profiler's row of the block at
    the training shape): MACs and forward time, and the block's parameters where training did not count
    them. ``no_block`` (the article's plain cnn): all zero. A block that could not be profiled: empty."""
    if no_block:
        cost: dict[str, Any] = {"block_params": 0, "macs": 0, "fwd_ms": 0.0}
    elif profile_row is None or str(profile_row.get("status")) != "ok":
        cost = {"block_params": None, "macs": None, "fwd_ms": None}
    else:
        cost = {"block_params": profile_row.get("params"), "macs": profile_row.get("macs"),
                "fwd_ms": profile_row.get("fwd_ms")}
    if row.get("block_params") not in (None, ""):
        cost.pop("block_params")  # counted on the model that trained
    row.update(cost)
    return row


def summarise(rows: Sequence[dict[str, Any]], article: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One row per block (in the order blocks first appear) over its ok runs: the mean and sample standard
    deviation over seeds of the minimum test loss, the mean test loss of the last epochs and the best test
    accuracy; the mean epochs to the target loss over the seeds that reached it, and how many did."""
    from attnzoo.rowdata import number

    article = article or {}
    blocks = list(dict.fromkeys(str(r["block"]) for r in rows))
    out = []
    for block in blocks:
        runs = [r for r in rows if str(r["block"]) == block and str(r.get("status")) == "ok"]
        line: dict[str, Any] = {"block": block, "family": next((r.get("family") for r in rows if str(r["block"]) == block), ""),
                                "seeds": len(runs)}
        for column in ("params", "block_params", "macs", "fwd_ms"):
            values = [number(r.get(column)) for r in runs if number(r.get(column)) is not None]
            line[column] = statistics.median(values) if values else None
            if column != "fwd_ms" and line[column] is not None:
                line[column] = int(line[column])
        for column in ("min_test_loss", "last_test_loss", "best_test_acc"):
            values = [number(r.get(column)) for r in runs if number(r.get(column)) is not None]
            line[column], line[f"{column}_std"] = _mean_std(values)
        reached = [number(r.get("epochs_to_target")) for r in runs if number(r.get("epochs_to_target")) is not None]
        line["epochs_to_target"] = statistics.fmean(reached) if reached else None
        line["reached_target"] = f"{len(reached)}/{len(runs)}"
        line["article_min_test_loss"] = article.get(block, {}).get("min_test_loss")
        out.append(line)
    return out


def with_spread(mean: Any, std: Any, digits: int = 3) -> str:
    """``0.054 ± 0.01`` (the mean alone for one seed; "" without a value)."""
    if mean is None:
        return ""
    shown = f"{mean:.{digits}g}"
    return shown + (f" ± {std:.2g}" if std is not None else "")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost and loss (lower is better on both), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


# ------------------------------------------------------------------------------------------- reading and figures


def is_train_rows(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether result rows are those of a train comparison (they carry a test-loss curve)."""
    return bool(rows) and all("test_loss_curve" in r for r in rows)


COST_LABELS = {"macs": "MACs of the block at the training shape", "fwd_ms": "forward time of the block (ms)",
               "block_params": "parameters of the block"}
LOSS_LABELS = {"min_test_loss": "minimum test loss", "last_test_loss": "mean test loss of the last epochs"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colours(blocks: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return {block: cmap(i % 20) for i, block in enumerate(blocks)}


def curve_bands(rows: Sequence[dict[str, Any]], column: str = "test_loss_curve") -> dict[str, dict[str, list[float]]]:
    """Per block, over its ok runs: the mean, lowest and highest value at each epoch all its seeds reached."""
    out: dict[str, dict[str, list[float]]] = {}
    for block in dict.fromkeys(str(r["block"]) for r in rows):
        curves = [parse_curve(r.get(column)) for r in rows if str(r["block"]) == block and str(r.get("status")) == "ok"]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        columns = [[c[i] for c in curves] for i in range(length)]
        out[block] = {"mean": [statistics.fmean(v) for v in columns], "low": [min(v) for v in columns],
                      "high": [max(v) for v in columns], "seeds": [len(curves)]}
    return out


def plot_loss_curves(rows: Sequence[dict[str, Any]], target, title: str = "") -> None:
    """Test loss per epoch, one line per block (the mean over seeds) in a band from the lowest to the highest
    seed; log scale. ``target``: a path or a binary stream (PNG)."""
    from attnzoo.output import save_figure

    plt = _pyplot()
    bands = curve_bands(rows)
    colours = _colours(list(bands))
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for block, band in bands.items():
        epochs = list(range(1, len(band["mean"]) + 1))
        # a marker on every epoch of a short run: a one-epoch line is a point, invisible without one
        ax.plot(epochs, band["mean"], color=colours[block], label=f"{block} ({band['seeds'][0]})", lw=1.6,
                marker="o" if len(epochs) <= 20 else None, markersize=4)
        if band["seeds"][0] > 1:
            ax.fill_between(epochs, band["low"], band["high"], color=colours[block], alpha=0.15, lw=0)
            if len(epochs) == 1:  # a band over one epoch has no width: the seeds' spread as an error bar
                ax.errorbar(epochs, band["mean"], yerr=[[band["mean"][0] - band["low"][0]],
                                                        [band["high"][0] - band["mean"][0]]],
                            color=colours[block], capsize=4, lw=1)
    if all(v > 0 for band in bands.values() for v in band["low"]):
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:.3g}")  # 0.6, not 6x10^-1, on a span under a decade
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    last = max((len(band["mean"]) for band in bands.values()), default=1)
    if last <= 20:  # a short run: whole epochs only, each with room around it
        ax.set_xlim(0.5, last + 0.5)
        ax.set_xticks(range(1, last + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test loss (binary cross-entropy)")
    ax.set_title(title or "test loss: mean over seeds, band from the lowest to the highest seed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), title="block (seeds)")
    fig.tight_layout()
    save_figure(fig, target, dpi=100)
    plt.close(fig)


def plot_tradeoff(summary: Sequence[dict[str, Any]], target, cost: str = "macs", loss: str = "min_test_loss",
                  title: str = "") -> list[str]:
    """Cost of the block (log x; no block at the left edge) against the loss (mean over seeds, a bar of one
    standard deviation each way), the Pareto front drawn as a step line. Returns the blocks on the front."""
    from attnzoo.output import save_figure

    plt = _pyplot()
    points = [s for s in summary if s.get(cost) is not None and s.get(loss) is not None]
    positive = [float(s[cost]) for s in points if float(s[cost]) > 0]
    floor = min(positive) / 10 if positive else 1.0
    xs = [float(s[cost]) if float(s[cost]) > 0 else floor for s in points]
    ys = [float(s[loss]) for s in points]
    front = pareto_front(list(zip([float(s[cost]) for s in points], ys)))
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = _colours([s["block"] for s in points])
    for i, s in enumerate(points):
        std = s.get(f"{loss}_std") or 0.0
        low = min(std, ys[i] * 0.95)  # a bar below zero cannot be drawn on a log axis
        ax.errorbar([xs[i]], [ys[i]], yerr=[[low], [std]], fmt="o" if i in front else "s", ms=7 if i in front else 5,
                    color=colours[s["block"]], mfc=colours[s["block"]] if i in front else "white", capsize=3)
        ax.annotate(s["block"], (xs[i], ys[i]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if front:
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.step(fx, fy, where="post", color="black", lw=1, ls="--", label="Pareto front (filled points)")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xscale("log")
    if all(y > 0 for y in ys):
        ax.set_yscale("log")
    if any(float(s[cost]) == 0 for s in points):
        ax.axvline(floor * 1.8, color="grey", lw=0.5)
        ax.text(floor, ax.get_ylim()[0], " 0", fontsize=7, color="grey", va="bottom")
    ax.set_xlabel(COST_LABELS.get(cost, cost) + (" (left edge: 0)" if any(float(s[cost]) == 0 for s in points) else ""))
    ax.set_ylabel(LOSS_LABELS.get(loss, loss) + " (mean ± std over seeds)")
    ax.set_title(title or f"what a block buys: {LOSS_LABELS.get(loss, loss)} against its cost")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, target, dpi=100)
    plt.close(fig)
    return [points[i]["block"] for i in front]
