"""Pure functions over rows, shared by the side that writes them (runners, campaign) and the side that reads
them (results): cell values as written, the plan file beside a row file, lost rows, a network row's
differences to its plain network. Torch-free and free of I/O beyond reading a plan (a bottom layer:
docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from attnzoo.errors import ConfigError


def typed_cell(text: str | None) -> Any:
    """A CSV cell back to what was written: int, float, bool, None for empty, else the string."""
    if text is None or text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def number(value: Any) -> float | None:
    """A finite float, or None (missing, empty, text, NaN)."""
    if isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def text(value: Any) -> str:
    """A value as the text a key compares: None and NaN are ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


# ------------------------------------------------------------------------------------------- campaign files


def plan_path(path: str | os.PathLike) -> Path:
    """Where the plan of the campaign whose rows are in ``path`` is kept, beside the rows."""
    target = Path(path)
    return target.with_name(target.name + ".campaign.json")


def load_plan(path: str | os.PathLike) -> dict[str, Any] | None:
    """The plan saved beside ``path``, or None when there is none."""
    target = plan_path(path)
    if not target.is_file():
        return None
    try:
        record = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{target}: not a readable campaign plan ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("units"), dict):
        raise ConfigError(f"{target}: not a campaign plan (no 'units')")
    return record


def is_lost(row: Mapping[str, Any]) -> bool:
    """A row the campaign wrote for a unit it could not run (its worker or node died): not a result."""
    return str(row.get("status", "")).startswith("lost")


# ------------------------------------------------------------------------------------------- network rows


def _delta(row: Mapping[str, Any], plain: Mapping[str, Any], column: str, digits: int | None = None):
    mine, base = number(row.get(column)), number(plain.get(column))  # rows read back from CSV hold text
    if mine is None or base is None:
        return None
    return round(mine - base, digits) if digits is not None else int(mine - base)


def add_deltas(row: dict[str, Any], plain: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row's differences to the plain network's row (nothing when either did not run)."""
    if plain is None or str(plain.get("status")) != "ok" or str(row.get("status")) != "ok":
        return row
    row.update(added_params=_delta(row, plain, "params"), added_macs=_delta(row, plain, "macs"),
               added_fwd_ms=_delta(row, plain, "fwd_ms", 4), added_train_ms=_delta(row, plain, "train_ms", 4))
    return row


#: What a network row shares with the plain network's row it is measured against.
_SAME_RUN = ("network", "shape", "mode", "compile", "amp", "channels_last", "dtype", "device", "threads")


def _run_key(row: Mapping[str, Any]) -> tuple:
    return tuple(str(row.get(column)) for column in _SAME_RUN)


def with_deltas(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows as they come, each network row given its differences to the plain row of its network, shape and
    settings that came before it (a plan puts the plain row first)."""
    plain: dict[tuple, Mapping[str, Any]] = {}
    for row in rows:
        if row.get("network"):
            if row.get("block") == "none":
                plain[_run_key(row)] = row
            else:
                add_deltas(row, plain.get(_run_key(row)))
        yield row


def add_network_deltas(rows: list[dict[str, Any]]) -> bool:
    """Fill the differences of every network row whose plain row is among ``rows``; True when any was."""
    plain = {_run_key(r): r for r in rows if r.get("network") and r.get("block") == "none"}
    changed = False
    for row in rows:
        if row.get("network") and row.get("block") != "none" and _run_key(row) in plain:
            before = row.get("added_params")
            add_deltas(row, plain[_run_key(row)])
            changed = changed or row.get("added_params") != before
    return changed


__all__ = ["add_deltas", "add_network_deltas", "is_lost", "load_plan", "number", "plan_path", "text", "typed_cell",
           "with_deltas"]
