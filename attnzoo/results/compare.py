"""Compare two result files of ``profile`` or ``sweep``: rows matched by block, shape and settings, the
ratio NEW / BASE per metric and a verdict that takes the measured spread into account. Never imports torch.

Matching: rows pair up on ``block``, ``shape`` and ``overrides`` (the ``--set`` values), plus every setting
(dtype, device, threads, compile, ...) that takes more than one value inside either file, so a file holding
float32 and float16 rows pairs each with its like. Settings that differ only *between* the files (eager
against --compile, 1 thread against 4, two GPUs) are what is being compared; they are named in the result.

Verdict on a time (``fwd_ms``, ``train_ms``): "slower" when NEW exceeds BASE by more than the larger of the
two interquartile ranges (``*_iqr_ms``) *and* by more than ``threshold`` (5 % by default), "faster" the
other way round, else "same": a difference inside the spread of the measurements is noise. Counts
(``macs``, ``flops``, ``params``) are exact, so any difference is a change; peak memory uses the threshold
alone. For those the verdict is "more", "less" or "same".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from attnzoo.errors import ConfigError
from attnzoo.columns import ENV_COLUMNS, MEASURED
from attnzoo.rowdata import number, text

#: Every pair is matched on these (a file without ``overrides`` has none).
KEY = ("block", "shape", "overrides")
#: Rows of blocks inside networks are matched on these too (when a file has network rows).
NETWORK_KEY = ("network", "placement", "stages")
#: A time metric and the column of its spread.
SPREAD = {"fwd_ms": "fwd_iqr_ms", "train_ms": "train_iqr_ms"}
#: Counted, not measured: exact (a numerical error is deterministic too: same inputs, weights and kernels).
EXACT = ("params", "trainable_params", "macs", "flops", "nonfinite", "grad_nonfinite")
#: Compared unless --metric says otherwise (those present in both files).
DEFAULT_METRICS = ("fwd_ms", "train_ms", "fwd_peak_mib", "train_peak_mib", "macs", "params", "rel_err",
                   "grad_rel_err", "nonfinite")
COLUMNS = ("block", "shape", "metric", "base", "new", "ratio", "verdict", "base_iqr", "new_iqr", "note")
#: Files of ``attnzoo train --compare`` runs pair up by block, seed and overrides (the batch, in the shape,
#: is a setting like any other) and compare what training bought by default.
TRAIN_KEY = ("block", "seed", "overrides")
TRAIN_METRICS = ("min_test_loss", "last_test_loss", "best_test_acc", "epochs_to_target", "min_train_loss")
#: Settings of a train file that, differing between the two files, are what is being compared.
TRAIN_SETTINGS = ("dataset", "difficulty", "epochs", "train_size", "test_size", "batch_size", "lr", "target_loss",
                  "last_epochs")


@dataclass
class Comparison:
    """The outcome: one row per matched pair and metric, then the unmatched and failed rows."""

    key: list[str]
    metrics: list[str]
    rows: list[dict[str, Any]]
    #: Settings whose values differ between BASE and NEW: column -> (BASE's values, NEW's values).
    differs: dict[str, tuple[str, str]] = field(default_factory=dict)
    matched: int = 0

    @property
    def columns(self) -> list[str]:
        extra = [k for k in self.key if k not in ("block", "shape")]
        return ["block", *(["shape"] if "shape" in self.key else []), *extra, *COLUMNS[2:]]

    def regressions(self, limit: float) -> list[dict[str, Any]]:
        """Times that got slower (beyond the spread) by a ratio above ``limit``."""
        return [r for r in self.rows if r["metric"] in SPREAD and r["verdict"] == "slower"
                and r["ratio"] is not None and r["ratio"] > limit]


def kind_of(rows: Sequence[dict[str, Any]]) -> str:
    """What a file of rows holds, in words."""
    from attnzoo.train_results import is_train_rows

    if is_train_rows(rows):
        return "training runs (attnzoo train --compare)"
    if any(text(r.get("network")) for r in rows):
        return "network rows (attnzoo profile --network)"
    return "profile rows (attnzoo profile or sweep)"


def describe(rows: Sequence[dict[str, Any]], key: Sequence[str] = ("block", "shape")) -> str:
    """A file's rows in a few words: how many, and the values of each key column (the first few)."""
    parts = []
    for column in key:
        values = [v for v in _values(rows, column) if v]
        if values:
            shown = ", ".join(values[:4]) + (f" and {len(values) - 4} more" if len(values) > 4 else "")
            parts.append(f"{column} {shown}")
    return f"{len(rows)} rows ({'; '.join(parts)})"


def is_time(metric: str) -> bool:
    return metric in SPREAD or (metric.endswith("_ms") and "_iqr" not in metric)


def verdict(metric: str, base: float, new: float, base_iqr: float | None = None, new_iqr: float | None = None,
            threshold: float = 0.05) -> str:
    """faster / slower / same for a time; more / less / same for anything else (see the module's doc)."""
    up, down = ("slower", "faster") if is_time(metric) else ("more", "less")
    if new == base:
        return "same"
    if metric in EXACT:
        return up if new > base else down
    spread = max(base_iqr or 0.0, new_iqr or 0.0) if is_time(metric) else 0.0
    if abs(new - base) <= spread:
        return "same"
    if base > 0 and new > base * (1 + threshold):
        return up
    if new > 0 and base > new * (1 + threshold):
        return down
    if base <= 0 or new <= 0:
        return up if new > base else down
    return "same"


def _values(rows: Iterable[dict[str, Any]], column: str) -> list[str]:
    return list(dict.fromkeys(text(r.get(column)) for r in rows))


def match_key(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], extra: Sequence[str] = ()) -> list[str]:
    """The columns pairs are matched on: KEY, each setting that varies inside a file, and ``extra``."""
    from attnzoo.train_results import is_train_rows

    key = list(TRAIN_KEY if is_train_rows(base) and is_train_rows(new) else KEY)
    key += [c for c in NETWORK_KEY if any(text(r.get(c)) for r in [*base, *new])]
    for column in ENV_COLUMNS:
        if len(_values(base, column)) > 1 or len(_values(new, column)) > 1:
            key.append(column)
    for column in extra:
        if column not in key:
            if not any(column in r for r in [*base, *new]):
                raise ConfigError(f"--match {column}: neither file has a column '{column}'")
            key.append(column)
    return key


def _index(rows: Sequence[dict[str, Any]], key: Sequence[str], role: str) -> dict[tuple[str, ...], dict[str, Any]]:
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(text(row.get(c)) for c in key)
        if k in found:
            described = ", ".join(f"{c}={v}" for c, v in zip(key, k) if v)
            raise ConfigError(f"{role} has two rows for {described}; say which column tells them apart with --match")
        found[k] = row
    return found


def pick_metrics(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]],
                 asked: Sequence[str] | None = None) -> list[str]:
    """``asked`` (checked against both files), else the DEFAULT_METRICS with a value in both files."""
    def has(rows: Sequence[dict[str, Any]], metric: str) -> bool:
        return any(number(r.get(metric)) is not None for r in rows)

    if asked:
        names = [m.strip() for item in asked for m in item.split(",") if m.strip()]
        known = [c for c in MEASURED if any(c in r for r in [*base, *new])]
        for metric in names:
            if not any(metric in r for r in base) or not any(metric in r for r in new):
                raise ConfigError(f"--metric {metric}: not a column of both files; try {', '.join(known)}")
        return list(dict.fromkeys(names))
    from attnzoo.train_results import is_train_rows

    defaults = TRAIN_METRICS if is_train_rows(base) and is_train_rows(new) else DEFAULT_METRICS
    return [m for m in defaults if has(base, m) and has(new, m)]


def compare(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None,
            threshold: float = 0.05, match: Sequence[str] = ()) -> Comparison:
    """Pair the rows of two result files and compare ``metrics`` (see the module's doc)."""
    if not threshold >= 0:
        raise ConfigError(f"--threshold must be 0 or more, got {threshold}")
    from attnzoo.train_results import is_train_rows

    kinds = [kind_of(rows) for rows in (base, new)]
    if is_train_rows(base) != is_train_rows(new):
        raise ConfigError(f"BASE holds {kinds[0]} and NEW {kinds[1]}: they are different kinds of result and do not "
                          "compare; give two files of the same kind")
    key = match_key(base, new, match)
    chosen = pick_metrics(base, new, metrics)
    base_index, new_index = _index(base, key, "BASE"), _index(new, key, "NEW")
    out: list[dict[str, Any]] = []
    matched = 0

    def keyed(k: tuple[str, ...]) -> dict[str, Any]:
        return dict(zip(key, k))

    for k, b in base_index.items():
        n = new_index.get(k)
        if n is None:
            out.append({**keyed(k), "metric": "", "verdict": "only in base"})
            continue
        matched += 1
        bad = [f"{role}: {row.get('status')}" for role, row in (("base", b), ("new", n))
               if text(row.get("status")) not in ("ok", "")]
        if bad:
            out.append({**keyed(k), "metric": "", "verdict": "failed", "note": "; ".join(bad)})
            continue
        for metric in chosen:
            bv, nv = number(b.get(metric)), number(n.get(metric))
            if bv is None and nv is None:
                continue
            row = {**keyed(k), "metric": metric, "base": bv, "new": nv, "ratio": None, "verdict": "missing",
                   "base_iqr": number(b.get(SPREAD.get(metric, ""))), "new_iqr": number(n.get(SPREAD.get(metric, "")))}
            if bv is None or nv is None:
                row["note"] = f"no {metric} in {'base' if bv is None else 'new'}"
            else:
                row["ratio"] = round(nv / bv, 4) if bv else None
                row["verdict"] = verdict(metric, bv, nv, row["base_iqr"], row["new_iqr"], threshold)
            out.append(row)
    for k in new_index:
        if k not in base_index:
            out.append({**keyed(k), "metric": "", "verdict": "only in new"})

    differs = {}
    for column in ENV_COLUMNS + TRAIN_SETTINGS + ("timestamp",):
        if column in key:
            continue
        bv, nv = " | ".join(v for v in _values(base, column) if v), " | ".join(v for v in _values(new, column) if v)
        if bv != nv and column != "timestamp":
            differs[column] = (bv, nv)
    return Comparison(key=key, metrics=chosen, rows=out, differs=differs, matched=matched)
