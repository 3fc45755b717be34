"""How cost grows with input size: grids of shapes, a log-log fit of cost ~ x^k, plots, resumable files.

``sweep`` is ``profile`` over a grid of shapes plus a fit: each point is measured by
:func:`attnzoo.profiling.runner.profile_one`, the function behind ``profile``, so a sweep measures exactly what
``profile`` does. There is no Python ``sweep`` function: the command (attnzoo.cli.sweep_cmd) plans the grid
and calls these helpers; from Python, ``attnzoo.profile(names, grid_shapes(...))`` and :func:`fit_rows` do
the same.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from attnzoo.errors import ConfigError, ShapeError

AXES = ("hw", "channels", "batch")
#: The quantity each axis varies, as a column name: cost is fitted against it.
AXIS_VARIABLE = {"hw": "N", "channels": "C", "batch": "B"}
METRICS = ("macs", "fwd_ms", "fwd_peak_mib", "train_ms", "train_peak_mib")


def parse_values(text: str) -> list[int]:
    """``"8,16,32"`` or a range ``"8:64:8"`` (start:stop:step, stop included) to a sorted list of ints."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] < 1):
                raise ValueError
            start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
            values = list(range(start, stop + 1, step))
        else:
            values = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise ConfigError(f"malformed grid '{text}': expected 8,16,32 or start:stop:step") from None
    if len(values) < 2 or min(values) < 1:
        raise ConfigError(f"grid '{text}' needs at least two positive values to fit a growth")
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


def fit_rows(rows: Sequence[dict[str, Any]], over: str, metrics: Sequence[str] = METRICS,
             stated: dict[str, tuple[str, float | None]] | None = None) -> list[dict[str, Any]]:
    """One row per block and metric: the fitted exponent k of cost ~ x^k, r^2, the points used and the
    card's stated complexity. Only rows with status ``ok`` and a value for the metric are used."""
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


def _typed(text: str | None) -> Any:
    """A CSV cell back to the value it was written from: int, float, None for empty, else the string."""
    if text is None or text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class RowFile:
    """Rows written as they finish, as CSV (one appended line each) or JSON (rewritten atomically), so an
    interrupted sweep leaves a readable file that ``--resume`` reads back."""

    def __init__(self, path: str | os.PathLike, fmt: str, columns: Sequence[str]):
        self.path = Path(path)
        self.fmt = fmt
        self.columns = list(columns)
        self.rows: list[dict[str, Any]] = []

    @staticmethod
    def format_for(path: str | os.PathLike, fmt: str) -> str:
        if fmt in ("csv", "json"):
            return fmt
        return "json" if str(path).endswith(".json") else "csv"

    def load(self) -> list[dict[str, Any]]:
        """The rows already in the file (for --resume); an absent file has none."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        text = self.path.read_text(encoding="utf-8")
        try:
            rows = (json.loads(text) if self.fmt == "json"
                    else [{k: _typed(v) for k, v in r.items()} for r in csv.DictReader(text.splitlines())])
        except (json.JSONDecodeError, csv.Error) as exc:
            raise ConfigError(f"cannot resume from {self.path}: {exc}") from None
        if not isinstance(rows, list) or any(not isinstance(r, dict) or "block" not in r or "shape" not in r
                                              for r in rows):
            raise ConfigError(f"cannot resume from {self.path}: not a file of attnzoo rows")
        self.rows = rows
        return rows

    @property
    def settings_path(self) -> Path:
        """Where the settings the rows were measured with are kept, beside the rows."""
        return self.path.with_name(self.path.name + ".settings.json")

    def save_settings(self, settings: dict[str, Any]) -> None:
        tmp = self.settings_path.with_name(self.settings_path.name + ".tmp")
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.settings_path)

    def saved_settings(self) -> dict[str, Any] | None:
        """The settings saved beside the rows, or None when there is no record."""
        if not self.settings_path.is_file():
            return None
        try:
            return json.loads(self.settings_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot --resume {self.path}: cannot read {self.settings_path.name}: {exc}") from None

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Refuse (ConfigError) to resume rows measured with other settings than ``settings``; returns the
        settings to save (the constructor overrides of the points already in the file kept with them).

        ``settings["overrides"]`` maps "block shape" to the constructor overrides of that point; only the
        points already measured are compared, so a resume may extend the grid."""
        now = json.loads(json.dumps(settings, sort_keys=True))  # the same JSON types as the saved copy
        if not self.rows:
            return now
        saved = self.saved_settings()
        if saved is None:
            raise ConfigError(f"cannot --resume {self.path}: {self.settings_path.name}, the record of the settings "
                              "its rows were measured with, is missing; remove the file or use another --output")
        measured = {" ".join(point_key(row)) for row in self.rows}
        before = {k: v for k, v in saved.get("overrides", {}).items() if k in measured}
        after = {k: v for k, v in now.get("overrides", {}).items() if k in measured}
        differences = [(key, saved.get(key), now.get(key)) for key in sorted((set(saved) | set(now)) - {"overrides"})
                       if saved.get(key) != now.get(key)]
        differences += [(f"overrides of {k}", before.get(k, {}), after.get(k, {})) for k in sorted(measured)
                        if before.get(k, {}) != after.get(k, {})]
        if differences:
            key, old, new = differences[0]
            raise ConfigError(f"cannot --resume {self.path}: its rows were measured with {key}={old!r}, "
                              f"this run has {key}={new!r}; --resume needs the same settings (or use another --output)")
        return {**now, "overrides": {**saved.get("overrides", {}), **now.get("overrides", {})}}

    def start(self, keep_existing: bool) -> None:
        if not keep_existing:
            self.rows = []
        self._rewrite()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.fmt == "csv" and self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "a", encoding="utf-8", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n").writerow(row)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            self._rewrite()

    def _rewrite(self) -> None:
        from attnzoo.output import to_csv, to_json

        text = to_csv(self.rows, self.columns) if self.fmt == "csv" else to_json(self.rows, self.columns)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)


def point_key(row: dict[str, Any]) -> tuple[str, str]:
    shape = row["shape"]
    shape = ",".join(str(d) for d in shape) if isinstance(shape, (tuple, list)) else str(shape)
    return str(row["block"]), shape


def plot(rows: Sequence[dict[str, Any]], over: str, path: str | os.PathLike,
         metrics: Sequence[str] = ("macs", "fwd_ms", "fwd_peak_mib")) -> None:
    """Log-log curves, one panel per metric and one line per block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = {"macs": "MACs", "fwd_ms": "forward latency (ms)", "fwd_peak_mib": "forward peak memory (MiB)",
             "train_ms": "training step (ms)", "train_peak_mib": "training peak memory (MiB)"}
    variable = {"hw": "N = H x W (positions)", "channels": "C (channels)", "batch": "B (batch)"}[over]
    present = [m for m in metrics if any(_number(r.get(m)) for r in rows)]
    if not present:
        raise ConfigError("nothing to plot: no successful measurement in the sweep")
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4.2), squeeze=False)
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    for ax, metric in zip(axes[0], present):
        for block in blocks:
            pts = sorted((axis_value(shape_of(r), over), _number(r.get(metric))) for r in rows
                         if r["block"] == block and str(r.get("status")) == "ok")
            pts = [(x, y) for x, y in pts if y]
            if pts:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker="o", label=block)
        ax.set_xlabel(variable)
        ax.set_ylabel(units.get(metric, metric))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("attnzoo sweep: cost against input size (log-log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
