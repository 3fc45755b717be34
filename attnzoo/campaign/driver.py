"""The driver every command shares: take the plan's units, keep this shard's, skip those a resumed file
already holds, run the rest on an executor and hand each row to the file as it arrives.

Commands plan units and consume the rows this returns, in the plan's order; they never learn where a unit
ran. Never imports torch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from attnzoo.campaign.rows import RowFile, measured, plan_path, save_plan
from attnzoo.campaign.shard import Shard
from attnzoo.campaign.units import Unit, unique
from attnzoo.errors import ConfigError


@dataclass
class Campaign:
    command: str  # "profile", "sweep", "train": named in the plan file
    units: list[Unit]  # the whole plan, before sharding
    shard: Shard | None = None
    row_file: RowFile | None = None  # --output as CSV or JSON: written as rows arrive
    resume: bool = False
    retry_failed: bool = False
    keep_file: bool = False  # refuse to overwrite an existing --output without --resume or overwrite
    overwrite: bool = False  # replace an existing --output: the file and its sidecars (settings, plan) go
    with_plan: bool = False  # write FILE.campaign.json (the parts of a sharded or Ray campaign are merged later)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit id -> a row kept from the file
    cleared: list[str] = field(default_factory=list)  # what --overwrite removed (for the command to say)

    def __post_init__(self) -> None:
        self.units = unique(self.units)
        if self.retry_failed and not self.resume:
            raise ConfigError("--retry-failed goes with --resume (it measures again the failed units of --output)")
        if self.resume and self.row_file is None:
            raise ConfigError("--resume needs --output FILE (the file to complete)")
        if self.resume and self.overwrite:
            raise ConfigError("give --resume (complete --output) or --overwrite (replace it), not both")

    @property
    def selected(self) -> list[Unit]:
        """The units this process is responsible for: its shard's, or all."""
        return self.shard.select(self.units) if self.shard is not None else list(self.units)

    def open(self, check_rows: bool = True) -> None:
        """Before any work: read back a resumed file (refusing rows of other units when ``check_rows``), or
        refuse to overwrite a file of rows; then write the file (and the plan beside it)."""
        if self.row_file is None:
            return
        path = self.row_file.path
        if self.resume:
            rows = self.row_file.load()
            if check_rows:
                ids = {unit.id for unit in self.units}
                foreign = [r for r in rows if r.get("unit_id") not in ids]
                if foreign:
                    raise ConfigError(f"cannot --resume {path}: {len(foreign)} of its rows are not units of this run "
                                      "(other blocks, shapes, settings or attnzoo version); rerun the same command "
                                      "or use another --output")
            self.done = measured(rows, self.selected, self.retry_failed)
            mine = {unit.id for unit in self.selected}
            self.done = {k: v for k, v in self.done.items() if k in mine}
            self.row_file.rows = list(self.done.values())
        elif self.overwrite:
            self.cleared = [p.name for p in (path, self.row_file.settings_path, plan_path(path)) if p.exists()]
            for stale in (path, self.row_file.settings_path, plan_path(path)):
                stale.unlink(missing_ok=True)
        elif path.exists() and path.stat().st_size > 0 and self.keep_file:
            raise ConfigError(f"{path} exists: pass --resume to complete it, or --overwrite to replace it "
                              "(and its .settings.json and .campaign.json)")
        self.row_file.start(keep_existing=self.resume)
        if self.with_plan or self.shard is not None:
            save_plan(path, self.command, self.units, self.shard)
        elif not self.resume:
            plan_path(path).unlink(missing_ok=True)  # a plan left by an earlier campaign in this file

    def run(self, executor, before: Callable[[Unit], dict | None] | None = None, progress=None,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run the units not done yet on ``executor``; returns this process's rows in the plan's order."""
        todo = [unit for unit in self.selected if unit.id not in self.done]
        new: dict[str, dict[str, Any]] = {}
        if progress is not None and self.done:
            progress.skip(len(self.selected) - len(todo))
        try:
            for row in executor.run(todo, before=before, progress=progress):
                new[row["unit_id"]] = row
                if self.row_file is not None:
                    self.row_file.append(row)
                if on_row is not None:
                    on_row(row)
        except KeyboardInterrupt:
            where = (f"{len(self.row_file.rows)} rows are in {self.row_file.path}; rerun the same command with "
                     "--resume to finish" if self.row_file is not None
                     else "nothing was saved (use --output FILE to keep rows as they finish)")
            print(f"attnzoo: interrupted: {where}", file=sys.stderr, flush=True)
            raise
        rows = [new.get(unit.id) or self.done[unit.id] for unit in self.selected
                if unit.id in new or unit.id in self.done]
        if self.row_file is not None and [id(r) for r in rows] != [id(r) for r in self.row_file.rows]:
            # the finished file in the plan's order, whatever order the units ended in
            self.row_file.rows = rows
            self.row_file.start(keep_existing=True)
        return rows


__all__ = ["Campaign"]
