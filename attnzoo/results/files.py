"""One result file written by ``profile``, ``sweep`` or ``train`` (CSV or JSON), read back as rows. Never
imports torch.

Files of any attnzoo version are accepted: a column a file lacks (older files have no ``device_name``,
``compile``, ``timestamp``...) reads as missing, never as an error. Only ``block`` and ``shape`` are required.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from attnzoo.columns import ENV_COLUMNS
from attnzoo.errors import ConfigError
from attnzoo.rowdata import text, typed_cell




def _shape_text(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(str(d) for d in value)
    return value


def load_file(path: str | os.PathLike, role: str = "", allow_empty: bool = False) -> list[dict[str, Any]]:
    """The rows of one result file. ``role`` (e.g. "BASE") prefixes the one-line error a bad file gives;
    ``allow_empty`` accepts a file of no rows (a shard that owns no unit)."""
    where = f"{role} {path}".strip()
    target = Path(path)
    if not target.exists():
        raise ConfigError(f"{where}: no such file")
    if target.is_dir():
        raise ConfigError(f"{where}: a folder (attnzoo.results.load_results reads the parts of a campaign)")
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


__all__ = ["environment", "load_file"]
