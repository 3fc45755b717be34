"""The roofline chart: arithmetic intensity against achieved FLOP/s, log-log, under the device's ceilings.

One point per row (FLOPs / bytes_min on x, FLOPs / fwd_ms on y); the flat line is the compute ceiling, the
slanted lines are bandwidth x intensity at main memory and at the fastest (cache-sized) working set
measured. Rows of the same block and shape measured in different modes (eager and compiled, say) are
joined by a line, so the chart shows what a mode bought.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def roofline_points(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """(block, shape, mode label, intensity, achieved FLOP/s) of every row with the numbers to place it."""
    points = []
    for row in rows:
        flops, low, ms = _number(row.get("flops")), _number(row.get("bytes_min")), _number(row.get("fwd_ms"))
        if str(row.get("status", "ok")) != "ok" or not (flops and low and ms):
            continue
        modes = [f"compile {row['compile']}" if row.get("compile") else "eager",
                 f"amp {row['amp']}" if row.get("amp") else "",
                 "channels-last" if row.get("channels_last") in (True, "True", "true") else ""]
        points.append({"block": row["block"], "shape": str(row["shape"]), "label": ", ".join(filter(None, modes)),
                       "intensity": flops / low, "flops_per_s": flops / (ms / 1e3)})
    return points


def plot_roofline(rows: Sequence[dict[str, Any]], calibration, path: str | os.PathLike) -> None:
    """Draw the chart of ``rows`` under ``calibration``'s ceilings to ``path`` (.png, .svg or .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnzoo.errors import ConfigError

    points = roofline_points(rows)
    if not points:
        raise ConfigError("nothing to plot: no row has a timed forward with FLOPs and bytes")
    peak = calibration.flops_per_s
    bandwidth = calibration.bandwidth
    dram = bandwidth.dram_gbs * 1e9
    fastest = max(max(bandwidth.copy_gbs), max(bandwidth.read_gbs)) * 1e9
    xs = [p["intensity"] for p in points]
    low, high = min(xs + [peak / fastest]) / 4, max(xs + [peak / dram]) * 4

    fig, ax = plt.subplots(figsize=(7.5, 5))
    grid = [low * (high / low) ** (i / 100) for i in range(101)]
    ax.loglog(grid, [min(peak, dram * x) for x in grid], color="black", lw=1.6,
              label=f"ceiling: compute {peak / 1e9:.0f} GFLOP/s, DRAM {dram / 1e9:.0f} GB/s")
    ax.loglog(grid, [min(peak, fastest * x) for x in grid], color="black", lw=1, ls="--",
              label=f"cache-sized working sets: {fastest / 1e9:.0f} GB/s")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for point in points:
        groups.setdefault((point["block"], point["shape"]), []).append(point)
    named = len(groups) <= 12  # beyond that a legend hides the chart: name the points instead
    for (block, shape), members in groups.items():
        line = ax.loglog([p["intensity"] for p in members], [p["flops_per_s"] for p in members], marker="o",
                         ms=4 if named else 3, lw=1, label=f"{block} {shape}" if named else None)[0]
        if not named:
            ax.annotate(block, (members[0]["intensity"], members[0]["flops_per_s"]), fontsize=5,
                        color=line.get_color(), xytext=(2, -6), textcoords="offset points")
        for p in members:
            if len(members) > 1 and named:
                ax.annotate(p["label"], (p["intensity"], p["flops_per_s"]), fontsize=7, color=line.get_color(),
                            xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOPs per compulsory byte)")
    ax.set_ylabel("achieved FLOP/s (forward)")
    ax.set_title(f"attnzoo roofline: {calibration.matmul.device}, {calibration.matmul.dtype}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from attnzoo.output import save_figure

    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)




def plot_bandwidth(curve, path: str | os.PathLike) -> None:
    """The measured bandwidth against working set (copies and reads) to ``path`` (.png, .svg or .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnzoo.output import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.semilogx([w / 2 ** 20 for w in curve.copy_sets], curve.copy_gbs, marker="o", label="copy (2 S moved)")
    ax.semilogx([w / 2 ** 20 for w in curve.read_sets], curve.read_gbs, marker="s", label="sum (S read)")
    ax.set_xlabel("working set (MiB)")
    ax.set_ylabel("GB/s")
    ax.set_title(f"memory bandwidth against working set ({curve.device}, {curve.threads} thread(s))", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


__all__ = ["plot_bandwidth", "plot_roofline", "roofline_points"]
