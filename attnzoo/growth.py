"""How cost grows with input size, as pure arithmetic on rows: grids of shapes along an axis, log-log fits of
cost ~ x^k, and crossovers against a baseline. No measurement, no plotting, no torch: ``sweep`` measures
the points and plots them (attnzoo.sweep); ``report`` and the benchmarks fit and compare rows read from files.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from attnzoo.errors import ConfigError, ShapeError

AXES = ("hw", "channels", "batch")
#: The quantity each axis varies, as a column name: cost is fitted against it.
AXIS_VARIABLE = {"hw": "N", "channels": "C", "batch": "B"}

def parse_values(text: str) -> list[int]:
    """``"8,16,32"`` or a range ``"8:64:8"`` (start:stop:step, stop included) to a sorted list of ints."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
        else:
            values = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise ConfigError(f"malformed grid '{text}': expected 8,16,32 or start:stop:step") from None
    if ":" in text:
        start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
        if step < 1:
            raise ConfigError(f"grid '{text}': the step must be a positive integer, got {step} (a range may run "
                              "downwards, as 64:8:8)")
        # A range may run either way (64:8:8 is 8, 16, ..., 64): the grid is sorted anyway.
        values = list(range(start, stop + 1, step)) if start <= stop else list(range(start, stop - 1, -step))
    low = [v for v in values if v < 1]
    if low:
        raise ConfigError(f"grid '{text}': every value must be a positive integer, and {low[0]} is not")
    if len(set(values)) < 2:
        count = len(set(values))
        raise ConfigError(f"grid '{text}' has {count} value{'' if count == 1 else 's'}; a growth is fitted on at least two")
    return sorted(set(values))


def grid_shapes(base: Sequence[int], over: str, values: Iterable[int]) -> list[tuple[int, ...]]:
    """Shapes varying one axis of ``base``: H = W (or N = v*v for tokens), the channels or the batch."""
    if over not in AXES:
        raise ConfigError(f"--over must be one of {', '.join(AXES)}, got '{over}'")
    base = tuple(base)
    shapes = []
    for v in values:
        if len(base) == 4:
            b, c, h, w = base
            shapes.append({"hw": (b, c, v, v), "channels": (b, v, h, w), "batch": (v, c, h, w)}[over])
        elif len(base) == 3:
            b, n, c = base
            shapes.append({"hw": (b, v * v, c), "channels": (b, n, v), "batch": (v, n, c)}[over])
        else:
            raise ShapeError("a sweep needs a base shape B,C,H,W or B,N,C")
    return shapes


def axis_value(shape: Sequence[int], over: str) -> int:
    """The fitted variable at ``shape``: N = H*W (or N of tokens), C, or B."""
    if over == "hw":
        return shape[2] * shape[3] if len(shape) == 4 else shape[1]
    if over == "channels":
        return shape[1] if len(shape) == 4 else shape[2]
    return shape[0]


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least squares on log y = k log x + b over positive points; returns (k, r^2), or None under 2 points."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0
              and math.isfinite(y)]
    if len(points) < 2 or len({p[0] for p in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mean_x) ** 2 for p in points)
    sxy = sum((p[0] - mean_x) * (p[1] - mean_y) for p in points)
    syy = sum((p[1] - mean_y) ** 2 for p in points)
    k = sxy / sxx
    r2 = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return k, r2


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fit_rows(rows: Sequence[dict[str, Any]], over: str, metrics: Sequence[str] | None = None,
             stated: dict[str, tuple[str, float | None]] | None = None) -> list[dict[str, Any]]:
    """One row per block and metric: the fitted exponent k of cost ~ x^k, r^2, the points used and the
    card's stated complexity. Only rows with status ``ok`` and a value for the metric are used.
    ``metrics`` defaults to every cost column that grows with the input (the ``metric`` columns)."""
    if metrics is None:
        from attnzoo.columns import METRICS as metrics
    variable = AXIS_VARIABLE[over]
    fits = []
    blocks = list(dict.fromkeys(row["block"] for row in rows))
    for block in blocks:
        mine = [r for r in rows if r["block"] == block and str(r.get("status", "")) == "ok"]
        for metric in metrics:
            pairs = [(axis_value(shape_of(r), over), _number(r.get(metric))) for r in mine]
            pairs = [(x, y) for x, y in pairs if y is not None and y > 0]
            if not pairs:
                continue
            fit = fit_power_law([p[0] for p in pairs], [p[1] for p in pairs])
            complexity, card_k = (stated or {}).get(block, ("", None))
            fits.append({"block": block, "metric": metric, "exponent": None if fit is None else round(fit[0], 3),
                         "r2": None if fit is None else round(fit[1], 4), "points": len(pairs),
                         "variable": variable, f"{variable}_range": f"{min(p[0] for p in pairs)}..{max(p[0] for p in pairs)}",
                         "card_macs_exponent": card_k if over == "hw" else None, "complexity": complexity})
    return fits


#: The metrics a crossover against a baseline is reported for: what a forward pass costs.
CROSSOVER_METRICS = ("macs", "fwd_ms", "fwd_peak_mib")


def _fixed_part(shape: Sequence[int], over: str) -> tuple[int, ...]:
    """The dimensions of ``shape`` that a sweep along ``over`` keeps fixed (B and C for hw)."""
    if over == "hw":
        return (shape[0], shape[1]) if len(shape) == 4 else (shape[0], shape[2])
    if over == "channels":
        return (shape[0], *shape[2:]) if len(shape) == 4 else (shape[0], shape[1])
    return tuple(shape[1:])


def _cheaper_intervals(xs: Sequence[float], log_ratios: Sequence[float]) -> tuple[list[tuple[float, float]],
                                                                                    list[tuple[float, str]]]:
    """Where log(block / baseline) < 0 on the piecewise log-log line through the points: the intervals of x
    where the block is cheaper and the crossings, each with the side the block is cheaper on after it."""
    crossings: list[tuple[float, str]] = []
    intervals: list[tuple[float, float]] = []
    start = xs[0] if log_ratios[0] < 0 else None
    for (x0, r0), (x1, r1) in zip(zip(xs, log_ratios), zip(xs[1:], log_ratios[1:])):
        if (r0 < 0) == (r1 < 0):
            continue
        # Both curves are straight between grid points on log-log, so their log ratio is too.
        t = r0 / (r0 - r1)
        x = math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
        if r1 < 0:
            crossings.append((x, "cheaper"))
            start = x
        else:
            crossings.append((x, "dearer"))
            intervals.append((start, x))
            start = None
    if start is not None:
        intervals.append((start, xs[-1]))
    return intervals, crossings


def crossovers(rows: Sequence[dict[str, Any]], baseline: str, over: str = "hw",
               metrics: Sequence[str] = CROSSOVER_METRICS) -> list[dict[str, Any]]:
    """For every block other than ``baseline`` and every metric: from which value of the swept variable
    (N for ``over="hw"``) the block costs less than the baseline.

    Block and baseline are compared at the shapes where both have an ``ok`` row with a positive value;
    between two such grid points both curves are taken as straight lines on log-log, so the crossing
    point is interpolated there. ``verdict`` is

    * ``always``: cheaper at every compared point; ``never``: at none; ``equal``: the same cost at every
      point (MACs of two blocks that differ only in how they compute);
    * ``above``: dearer at the small end, cheaper from ``crossover`` to the end of the grid (one crossing);
    * ``below``: cheaper at the small end, dearer from ``crossover`` on: it crosses back (one crossing);
    * ``mixed``: more than one crossing; ``crossover`` is the last one, ``crossings`` lists them all and
      ``cheaper_on`` the intervals where the block is cheaper.

    Equal cost counts as not cheaper. Rows of one block at several fixed parts (say two batch sizes)
    give one result each, compared with the baseline at the same fixed part (``base``: its smallest shape).
    With no point in common (the baseline skipped or failed there) the verdict is "no data"; ``compared``
    says which range of the variable the verdict covers, ``ratio_at_end`` is block / baseline at its top.
    """
    variable = AXIS_VARIABLE[over]
    if not any(r["block"] == baseline for r in rows):
        raise ConfigError(f"the baseline '{baseline}' is not among the swept blocks")

    def values(block: str, metric: str) -> dict[tuple[int, ...], dict[int, float]]:
        found: dict[tuple[int, ...], dict[int, float]] = {}
        for row in rows:
            if row["block"] != block or str(row.get("status", "")) != "ok":
                continue
            value = _number(row.get(metric))
            if value is None or value <= 0:
                continue
            shape = shape_of(row)
            found.setdefault(_fixed_part(shape, over), {})[axis_value(shape, over)] = value
        return found

    bases = _bases(rows, over)
    results = []
    for block in dict.fromkeys(r["block"] for r in rows):
        if block == baseline:
            continue
        for (owner, fixed), base in bases.items():
            if owner != block:
                continue
            for metric in metrics:
                mine = values(block, metric).get(fixed, {})
                theirs = values(baseline, metric).get(fixed, {})
                xs = sorted(set(mine) & set(theirs))
                result: dict[str, Any] = {"block": block, "metric": metric, "baseline": baseline, "base": base,
                                          "variable": variable, "points": len(xs), "verdict": "no data",
                                          "crossover": None, "crossings": [], "cheaper_on": [],
                                          "compared": f"{xs[0]}..{xs[-1]}" if xs else "", "ratio_at_end": None}
                if xs:
                    log_ratios = [math.log(mine[x] / theirs[x]) for x in xs]
                    intervals, crossings = _cheaper_intervals(xs, log_ratios)
                    if all(r == 0 for r in log_ratios):
                        result["verdict"] = "equal"
                    elif not crossings:
                        result["verdict"] = "always" if log_ratios[0] < 0 else "never"
                    elif len(crossings) == 1:
                        result["verdict"] = "above" if crossings[0][1] == "cheaper" else "below"
                    else:
                        result["verdict"] = "mixed"
                    result["crossover"] = crossings[-1][0] if crossings else None
                    result["crossings"] = crossings
                    result["cheaper_on"] = intervals
                    result["ratio_at_end"] = mine[xs[-1]] / theirs[xs[-1]]
                results.append(result)
    return results


def crossover_label(result: dict[str, Any], thousands: bool = True) -> str:
    """One cell for a crossover: "always", "never", "1,234" (cheaper from there on), "below 1,234"
    (cheaper only below: it crosses back), or the intervals where it is cheaper for several crossings."""
    def number(x: float) -> str:
        return f"{round(x):,}" if thousands else str(round(x))

    verdict = result["verdict"]
    if verdict == "above":
        return number(result["crossover"])
    if verdict == "below":
        return f"below {number(result['crossover'])}"
    if verdict == "mixed":
        return "cheaper on " + ", ".join(f"{number(a)}-{number(b)}" for a, b in result["cheaper_on"])
    return verdict


def crossover_columns(metrics: Sequence[str] = CROSSOVER_METRICS) -> list[str]:
    """The columns a sweep with --baseline adds to its rows: the baseline and one crossover per metric."""
    return ["baseline", *(f"crossover_{m}" for m in metrics)]


def add_crossover_columns(rows: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]], baseline: str,
                          over: str, metrics: Sequence[str] = CROSSOVER_METRICS) -> None:
    """Write each block's crossovers into its rows (in place), one column per metric, labelled as in
    :func:`crossover_label` without thousands separators; the baseline's own rows say "baseline"."""
    by_key = {(r["block"], r["base"], r["metric"]): r for r in results}
    bases = _bases(rows, over)
    for row in rows:
        base = bases[(row["block"], _fixed_part(shape_of(row), over))]
        row["baseline"] = baseline
        for metric in metrics:
            result = by_key.get((row["block"], base, metric))
            row[f"crossover_{metric}"] = ("baseline" if row["block"] == baseline
                                          else crossover_label(result, thousands=False) if result else None)


def _bases(rows: Sequence[dict[str, Any]], over: str) -> dict[tuple[str, tuple[int, ...]], str]:
    """For each block and fixed part of its shapes, the smallest of those shapes, as "1,64,16,16"."""
    smallest: dict[tuple[str, tuple[int, ...]], tuple[int, ...]] = {}
    for row in rows:
        shape = shape_of(row)
        key = (row["block"], _fixed_part(shape, over))
        if key not in smallest or axis_value(shape, over) < axis_value(smallest[key], over):
            smallest[key] = shape
    return {key: ",".join(str(d) for d in shape) for key, shape in smallest.items()}


def shape_of(row: dict[str, Any]) -> tuple[int, ...]:
    """A row's shape as a tuple, whether it holds "1,64,8,8" (read from a file) or a sequence."""
    shape = row["shape"]
    return tuple(int(d) for d in str(shape).split(",")) if not isinstance(shape, (tuple, list)) else tuple(shape)


def extrapolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Predict y at ``x`` from the last two measured points on a log-log line (None with fewer)."""
    points = [(a, b) for a, b in zip(xs, ys) if a > 0 and b and b > 0]
    if len(points) < 2:
        return None
    (x0, y0), (x1, y1) = points[-2], points[-1]
    if x1 == x0:
        return y1
    k = math.log(y1 / y0) / math.log(x1 / x0)
    return y1 * (x / x1) ** max(k, 0.0)


def crossing_points(rows: Sequence[dict[str, Any]], metric: str, over: str,
                    results: Sequence[dict[str, Any]]) -> list[tuple[str, float, float, str]]:
    """Where to mark the crossings of ``metric`` on a plot: (block, x, y, direction), y being the
    baseline's cost at x on its log-log line (where the two curves meet)."""
    points = []
    for result in results:
        if result["metric"] != metric or not result["crossings"]:
            continue
        fixed = _fixed_part(tuple(int(d) for d in result["base"].split(",")), over)
        line = sorted((axis_value(shape_of(r), over), _number(r.get(metric))) for r in rows
                      if r["block"] == result["baseline"] and str(r.get("status")) == "ok"
                      and _fixed_part(shape_of(r), over) == fixed)
        line = [(x, y) for x, y in line if y and y > 0]
        for x, direction in result["crossings"]:
            for (x0, y0), (x1, y1) in zip(line, line[1:]):
                if x0 <= x <= x1:
                    t = 0.0 if x1 == x0 else math.log(x / x0) / math.log(x1 / x0)
                    points.append((result["block"], x, math.exp(math.log(y0) + t * math.log(y1 / y0)), direction))
                    break
    return points
