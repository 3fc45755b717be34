"""Progress of a campaign on stderr: done / running / failed / left, and the unit that last started.

On a terminal a live bar; elsewhere (a batch job's log) one line every ``every`` seconds when asked, so a
long Ray campaign shows in its log that it moves. Never on stdout, which carries the data.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class CampaignProgress:
    def __init__(self, total: int, verb: str = "profiling", every: float | None = None):
        self.total = total
        self.verb = verb
        self.every = every
        self.done = self.failed = 0
        self.running: set[str] = set()
        self._current = ""
        self._bar = None
        self._task = None
        self._last_line = time.monotonic()

    # ---- the executor's calls
    def started(self, unit) -> None:
        self.running.add(unit.id)
        self._current = unit.label
        self._show()

    def finished(self, unit, row: dict[str, Any]) -> None:
        self.running.discard(unit.id)
        self.done += 1
        if str(row.get("status", "ok")) not in ("ok",) and not str(row.get("status", "")).startswith("skipped"):
            self.failed += 1
        self._show(advance=1)

    def skip(self, count: int) -> None:
        """Units already measured (``--resume``): counted as done before anything runs."""
        self.done += count
        self._show(advance=count)

    # ----
    @property
    def left(self) -> int:
        return max(self.total - self.done - len(self.running), 0)

    def line(self) -> str:
        return (f"done {self.done}/{self.total} · running {len(self.running)} · failed {self.failed} · "
                f"left {self.left}")

    def _show(self, advance: int = 0) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, description=f"{self.line()} · {self._current}")
        elif self.every is not None and time.monotonic() - self._last_line >= self.every:
            self._last_line = time.monotonic()
            print(f"attnzoo: {self.line()}", file=sys.stderr, flush=True)

    def __enter__(self) -> "CampaignProgress":
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        if console.is_terminal:
            self._bar = Progress(TextColumn(self.verb + " {task.description}"), BarColumn(), TimeElapsedColumn(),
                                 console=console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None


__all__ = ["CampaignProgress"]
