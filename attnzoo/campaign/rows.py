"""Result files written as rows finish, ``--resume``, and the plan of a campaign beside its rows.

A campaign's file of rows is rewritten whole after every row (a temporary file renamed into place), so a
driver that dies leaves a complete file; beside it ``FILE.campaign.json`` names every unit of the campaign
(the whole plan, not only this shard's), which ``attnzoo merge`` uses to list the units still missing.
Never imports torch.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Sequence

from attnzoo.errors import ConfigError
from attnzoo.rowdata import is_lost, load_plan, plan_path, typed_cell


class RowFile:
    """Rows written as they finish, as CSV or JSON, the file rewritten whole and renamed into place after each
    row, so an interrupted run leaves a complete, readable file that ``--resume`` reads back."""

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
                    else [{k: typed_cell(v) for k, v in r.items()} for r in csv.DictReader(text.splitlines())])
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
        self._rewrite()

    def _rewrite(self) -> None:
        """The whole file under a temporary name, then renamed over the old one: a Ctrl-C or a crash at any
        moment leaves the previous complete file, never a half-written row."""
        from attnzoo.output import to_csv, to_json, write_atomic

        text = to_csv(self.rows, self.columns) if self.fmt == "csv" else to_json(self.rows, self.columns)
        try:
            write_atomic(self.path, text)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def point_key(row: dict[str, Any]) -> tuple[str, str]:
    shape = row["shape"]
    shape = ",".join(str(d) for d in shape) if isinstance(shape, (tuple, list)) else str(shape)
    return str(row["block"]), shape



def save_plan(path: str | os.PathLike, command: str, units: Sequence[Any] | dict[str, str], shard: Any = None) -> None:
    """Write ``FILE.campaign.json``: the command, the shard and every unit of the whole plan (id: label);
    ``units`` are Units or already a mapping of id to label."""
    from attnzoo._version import __version__
    from attnzoo.output import write_atomic

    labels = units if isinstance(units, dict) else {unit.id: unit.label for unit in units}
    record = {"attnzoo_version": __version__, "command": command, "shard": None if shard is None else str(shard),
              "units": labels}
    try:
        write_atomic(plan_path(path), json.dumps(record, indent=1) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {plan_path(path)}: {exc.strerror or exc}") from None




def measured(rows: Sequence[dict[str, Any]], units: Sequence[Any], retry_failed: bool = False) -> dict[str, dict]:
    """The rows of ``rows`` that ``--resume`` keeps, by unit id: every row of a unit in ``units`` except the
    lost ones (and, with ``retry_failed``, except those that failed or were skipped). Rows written before
    rows had a unit id are matched by block and shape."""
    by_point = {(unit.block, unit.shape_text): unit.id for unit in units}
    kept: dict[str, dict] = {}
    for row in rows:
        unit_id = row.get("unit_id") or by_point.get(point_key(row))
        if unit_id is None or is_lost(row) or (retry_failed and row.get("status") != "ok"):
            continue
        kept[str(unit_id)] = row
    return kept


__all__ = ["RowFile", "is_lost", "load_plan", "measured", "plan_path", "point_key", "save_plan"]
