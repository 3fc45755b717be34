"""``attnzoo merge``: the parts of a campaign (shards, Ray runs, resumed files) as one set of rows.

Each unit appears once. The same unit twice is kept once (an ok row over a failed one, then the later
row); rows from different devices are never averaged. Refused with one line: parts from different attnzoo
versions, parts whose plans share no unit (not one campaign), and the same unit id with different settings.
The units of the plans (``FILE.campaign.json`` beside each part) that have no row are listed as missing.
Never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from attnzoo.errors import ConfigError
from attnzoo.results.files import load_file, result_files
from attnzoo.rowdata import add_network_deltas, is_lost, load_plan, text

#: Columns that say what a unit measured: two rows of one unit id must agree on them.
SAME_UNIT = ("block", "shape", "overrides", "mode", "compile", "amp", "channels_last", "dtype", "attnzoo_version",
             "network", "placement", "stages")


@dataclass
class Merged:
    rows: list[dict[str, Any]]
    columns: list[str]
    plan: dict[str, str]  # unit id -> label, over every part's plan (and the rows)
    files: list[Path]
    missing: list[str] = field(default_factory=list)  # labels of planned units without a row (or only lost ones)
    repeated: int = 0  # units found in more than one row
    unplanned: list[Path] = field(default_factory=list)  # parts with no plan beside them


def part_files(paths: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[Path]:
    """The result files named: files as given, folders searched (recursively) for .csv and .json files of
    rows; the other files attnzoo writes (plans, settings, training summaries and metrics, figures) are left
    out (:func:`attnzoo.results.result_files` gives the notes that say so)."""
    found, _ = result_files(paths, exclude)
    for given in paths:
        if Path(given).is_dir() and not any(Path(given) in p.parents for p in found):
            raise ConfigError(f"{given}: a folder with no result files (.csv or .json of rows)")
    if not found:
        raise ConfigError("no result files to merge")
    return found


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    rank = lambda row: (not is_lost(row), row.get("status") == "ok", text(row.get("timestamp")))  # noqa: E731
    return rank(new) > rank(old)


def merge_parts(paths: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> Merged:
    files = part_files(paths, exclude)
    parts = [(path, load_file(path, allow_empty=True), load_plan(path)) for path in files]

    versions: dict[str, Path] = {}
    for path, rows, plan in parts:
        for version in {text(r.get("attnzoo_version")) for r in rows} | ({plan.get("attnzoo_version", "")} if plan else set()):
            if version:
                versions.setdefault(version, path)
    if len(versions) > 1:
        (v1, f1), (v2, f2) = list(versions.items())[:2]
        raise ConfigError(f"the parts come from different attnzoo versions ({v1} in {f1}, {v2} in {f2}): "
                          "their units differ; merge parts measured by one version")

    planned = [(path, plan) for path, _, plan in parts if plan is not None]
    for i, (path_a, plan_a) in enumerate(planned):
        for path_b, plan_b in planned[i + 1:]:
            if not set(plan_a["units"]) & set(plan_b["units"]):
                raise ConfigError(f"{path_a} and {path_b} share no unit: they are not parts of one campaign")

    plan: dict[str, str] = {}
    for _, record in planned:
        for unit_id, label in record["units"].items():
            plan.setdefault(unit_id, label)

    chosen: dict[str, tuple[dict[str, Any], Path]] = {}
    columns: list[str] = []
    seen = 0
    for path, rows, _ in parts:
        for row in rows:
            unit_id = text(row.get("unit_id"))
            if not unit_id:
                raise ConfigError(f"{path}: its rows have no unit_id (written by an attnzoo without campaigns); "
                                  "merge needs rows of profile or sweep of this version")
            columns += [c for c in row if c not in columns]
            seen += 1
            if unit_id in chosen:
                kept, where = chosen[unit_id]
                for column in SAME_UNIT:
                    if text(kept.get(column)) != text(row.get(column)):
                        raise ConfigError(f"unit {unit_id} is {column}={text(kept.get(column))!r} in {where} but "
                                          f"{text(row.get(column))!r} in {path}: the same unit with other settings; "
                                          "not merged")
                if _better(row, kept):
                    chosen[unit_id] = (row, path)
            else:
                chosen[unit_id] = (row, path)
            plan.setdefault(unit_id, f"{row['block']} {row['shape']}")

    rows = [chosen[u][0] for u in plan if u in chosen]
    add_network_deltas(rows)  # a network row and its plain network's row may come from different parts
    missing = [label for unit_id, label in plan.items() if unit_id not in chosen or is_lost(chosen[unit_id][0])]
    return Merged(rows=rows, columns=columns, plan=plan, files=files, missing=missing, repeated=seen - len(chosen),
                  unplanned=[path for path, _, record in parts if record is None])


def load_parts(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a folder of parts, merged (what ``compare`` and ``report`` read for a folder)."""
    return merge_parts([path]).rows


__all__ = ["Merged", "SAME_UNIT", "load_parts", "merge_parts", "part_files"]
