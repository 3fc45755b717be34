"""One result file written by ``profile``, ``sweep`` or ``train`` (CSV or JSON), read back as rows, and the
files attnzoo writes beside them that hold no rows (plans, settings, summaries, figures): recognised and
skipped with a note. Never imports torch.

Files of any attnzoo version are accepted: a column a file lacks (older files have no ``device_name``,
``compile``, ``timestamp``...) reads as missing, never as an error. Only ``block`` and ``shape`` are required.
The other files attnzoo writes beside rows (a campaign's plan, a settings record, a training comparison's
summary, a run's per-epoch metrics, figures, checkpoints, report pages) are recognised by :func:`file_kind`,
so that ``report``, ``compare`` and ``merge`` skip them with a note instead of refusing them.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnzoo.columns import ENV_COLUMNS
from attnzoo.errors import ConfigError
from attnzoo.rowdata import text, typed_cell




def _shape_text(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(str(d) for d in value)
    return value


#: What each kind of file attnzoo writes that holds no rows of its own is: (a description, one, several).
SIDE_KINDS = {
    "plan": ("the plan of a campaign (FILE.campaign.json, read by merge with FILE)", "campaign plan",
             "campaign plans"),
    "settings": ("the settings of a file of rows (FILE.settings.json, read by --resume)", "settings record",
                 "settings records"),
    "train-summary": ("the per-block summary of a train comparison", "train comparison summary",
                      "train comparison summaries"),
    "train-metrics": ("the per-epoch metrics of one training run", "training run's per-epoch metrics",
                      "training runs' per-epoch metrics"),
    "figure": ("a figure", "figure", "figures"),
    "checkpoint": ("a training checkpoint", "checkpoint", "checkpoints"),
    "page": ("a report page", "report page", "report pages"),
}
#: Columns a training run's per-epoch metrics.csv starts with, and those of a train comparison's summary.csv.
_METRICS_HEAD = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
_SUMMARY_HEAD = {"block", "seeds", "min_test_loss", "reached_target"}


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def file_kind(path: str | os.PathLike) -> str:
    """``rows`` for a file that may hold result rows (checked when read), else the key of
    :data:`SIDE_KINDS` for a file attnzoo writes that holds none, by its name or its CSV header."""
    target = Path(path)
    name, suffix = target.name.lower(), target.suffix.lower()
    if name.endswith(".campaign.json"):
        return "plan"
    if name.endswith(".settings.json"):
        return "settings"
    if suffix in (".png", ".svg", ".pdf"):
        return "figure"
    if suffix == ".pt":
        return "checkpoint"
    if suffix in (".html", ".htm"):
        return "page"
    if suffix == ".csv" or suffix not in (".json", ""):
        header = _csv_header(target)
        if tuple(header[: len(_METRICS_HEAD)]) == _METRICS_HEAD:
            return "train-metrics"
        if _SUMMARY_HEAD <= set(header) and "shape" not in header:
            return "train-summary"
    return "rows"


def rows_beside(path: str | os.PathLike, kind: str) -> Path | None:
    """The file of rows that a file of ``kind`` belongs to, where it exists."""
    target = Path(path)
    if kind in ("plan", "settings"):
        found = target.with_name(target.name.rsplit(".", 2)[0])
    elif kind == "train-summary":
        found = target.with_name("runs.csv")
    elif kind == "train-metrics":  # OUT/<block>/seed-N/metrics.csv
        found = target.parent.parent.parent / "runs.csv"
    else:
        return None
    return found if found.is_file() else None


def _skipped(path: Path, kind: str) -> str:
    rows = rows_beside(path, kind)
    return f"skipped {path}: {SIDE_KINDS[kind][0]}" + (f" (its rows: {rows})" if rows is not None else "")


def result_files(paths: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None
                 ) -> tuple[list[Path], list[str]]:
    """The files of rows among ``paths`` (a folder is searched, recursively, for .csv and .json files), and
    one note for each file given, or folder, that held files of attnzoo's without rows (skipped).
    ``exclude``: a file to leave out (merge's output). A path that does not exist is a ConfigError."""
    found: list[Path] = []
    notes: list[str] = []
    skip = Path(exclude).resolve() if exclude is not None else None
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"{given}: no such file or folder")
        if not path.is_dir():
            kind = file_kind(path)
            if kind == "rows":
                found.append(path)
            else:
                notes.append(_skipped(path, kind))
            continue
        inside = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        rows = [p for p in inside if p.suffix.lower() in (".csv", ".json") and file_kind(p) == "rows"]
        found += rows
        beside = {str(p) + ".campaign.json" for p in rows} | {str(p) + ".settings.json" for p in rows}
        counted: dict[str, list[Path]] = {}
        for p in inside:
            kind = file_kind(p)
            if kind != "rows" and str(p) not in beside:  # a plan or settings beside its rows is read with them
                counted.setdefault(kind, []).append(p)
        if counted:
            parts = [f"{len(files)} {SIDE_KINDS[kind][1 if len(files) == 1 else 2]} ({', '.join(str(f.relative_to(path)) for f in files[:2])}"
                     f"{', ...' if len(files) > 2 else ''})" for kind, files in counted.items()]
            notes.append(f"{path}: skipped what holds no rows: {'; '.join(parts)}")
    unique = list(dict.fromkeys(p for p in found if skip is None or p.resolve() != skip))
    return unique, notes


def load_file(path: str | os.PathLike, role: str = "", allow_empty: bool = False) -> list[dict[str, Any]]:
    """The rows of one result file. ``role`` (e.g. "BASE") prefixes the one-line error a bad file gives;
    ``allow_empty`` accepts a file of no rows (a shard that owns no unit)."""
    where = f"{role} {path}".strip()
    target = Path(path)
    if not target.exists():
        raise ConfigError(f"{where}: no such file")
    if target.is_dir():
        raise ConfigError(f"{where}: a folder (attnzoo.results.load_results reads the parts of a campaign)")
    kind = file_kind(target)
    if kind != "rows":
        rows_file = rows_beside(target, kind)
        raise ConfigError(f"{where}: {SIDE_KINDS[kind][0]}, not a file of rows"
                          + (f"; its rows are in {rows_file}" if rows_file is not None else ""))
    try:
        text = target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a text file (expected the CSV or JSON of attnzoo profile or sweep)") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if not text.strip():
        raise ConfigError(f"{where}: the file is empty")
    as_json = target.suffix.lower() == ".json" or (target.suffix.lower() != ".csv" and text.lstrip()[:1] in "[{")
    if as_json:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(rows, dict) and isinstance(rows.get("rows"), list):
            rows = rows["rows"]
    else:
        try:
            reader = csv.DictReader(text.splitlines())
            rows = [{k: typed_cell(v) for k, v in r.items() if k is not None} for r in reader]
        except csv.Error as exc:
            raise ConfigError(f"{where}: not valid CSV ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{where}: not a file of attnzoo rows (expected a list of rows)")
    if not rows and not allow_empty:
        raise ConfigError(f"{where}: has no rows")
    missing = [c for c in ("block", "shape") if any(c not in r or r[c] in (None, "") for r in rows)]
    if missing:
        raise ConfigError(f"{where}: not a file of attnzoo rows (no '{missing[0]}' column)")
    for row in rows:
        row["shape"] = _shape_text(row["shape"])
        row["block"] = str(row["block"])
        row.setdefault("status", "ok")
    return rows




def environment(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each environment column present in ``rows``, with its values ("a | b" when rows differ)."""
    found: dict[str, str] = {}
    for column in ENV_COLUMNS:
        values = list(dict.fromkeys(text(r.get(column)) for r in rows if column in r))
        values = [v for v in values if v != ""] or ([""] if values else [])
        if values and values != [""]:
            found[column] = " | ".join(values)
    stamps = sorted(text(r.get("timestamp")) for r in rows if text(r.get("timestamp")))
    if stamps:
        found["timestamp"] = stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} .. {stamps[-1]}"
    return found


__all__ = ["SIDE_KINDS", "environment", "file_kind", "load_file", "result_files", "rows_beside"]
