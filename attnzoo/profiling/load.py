"""How busy the machine was while a row was measured, and the warnings a table's footer gives.

A latency measured while other processes compete for the cores is not the block's: on a 2-core machine
with one other busy job, a forward on 2 threads waits for a descheduled thread and its median and spread
swing by an order of magnitude. Each row records ``load`` (the 1-minute load average), ``busy`` (the other
runnable tasks at the moment it was measured: the kernel's count of running tasks less this process's own)
and ``cores`` (the cores this process may run on). :func:`stability_warnings` reads rows (fresh or read
back from a file) and says, as pyperf does, when "the result may be unstable": fewer free cores than the
threads asked for, or a spread (IQR) wide beside the median.

Torch-free: ``report`` and ``compare`` may read it.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from attnzoo.rowdata import number

#: A spread (IQR) above this fraction of the median makes a row's time unreliable. pyperf warns when the
#: standard deviation passes 10 % of the mean; the IQR of a normal distribution is 1.35 of its deviation.
SPREAD_LIMIT = 0.10
#: The time columns whose spread is judged, with the column of each one's spread.
TIMES = {"fwd_ms": "fwd_iqr_ms", "train_ms": "train_iqr_ms"}


@dataclass(frozen=True)
class Load:
    load: float | None  # the 1-minute load average
    busy: int | None  # other runnable tasks (None where /proc cannot tell)
    cores: int  # the cores this process may run on

    def fields(self) -> dict[str, Any]:
        return {"load": None if self.load is None else round(self.load, 2), "busy": self.busy, "cores": self.cores}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _running_total() -> int | None:
    """The kernel's count of runnable tasks (threads) on the machine, this process's included."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _running_own() -> int:
    """This process's runnable threads (the one reading is among them)."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", encoding="ascii", errors="replace") as handle:
                state = handle.read().rpartition(")")[2].split()[:1]
        except OSError:  # the thread ended meanwhile
            continue
        count += state == ["R"]
    return max(count, 1)


def other_runnable() -> int | None:
    """Runnable tasks that are not this process's, now; None where the kernel does not say (not Linux)."""
    total = _running_total()
    if total is None:
        return None
    return max(0, total - _running_own())


def sample_load(samples: int = 5, interval: float = 0.002) -> Load:
    """The load now: the median of ``samples`` counts of other runnable tasks, ``interval`` seconds apart
    (one count is a snapshot that a short-lived process can fill)."""
    counts = []
    for i in range(samples):
        found = other_runnable()
        if found is None:
            break
        counts.append(found)
        if i + 1 < samples:
            time.sleep(interval)
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        average = None
    busy = int(statistics.median_low(counts)) if counts else None
    return Load(load=average, busy=busy, cores=usable_cores())


def worst(*loads: Load) -> Load:
    """The busier of several samples of one row (before and after its measurements)."""
    busy = [l.busy for l in loads if l.busy is not None]
    averages = [l.load for l in loads if l.load is not None]
    return Load(load=max(averages) if averages else None, busy=max(busy) if busy else None,
                cores=min(l.cores for l in loads))


def free_cores(row: Mapping[str, Any]) -> int | None:
    """The cores left to the row's threads: its cores less the other runnable tasks (None if unknown)."""
    cores, busy = number(row.get("cores")), number(row.get("busy"))
    if cores is None or busy is None:
        return None
    return max(0, int(cores) - int(busy))


def stability_warnings(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per cause that makes the rows' times unreliable (empty when they look sound): rows measured
    with fewer free cores than their threads, and rows whose spread is wide beside their median."""
    rows = [r for r in rows if str(r.get("status", "ok")) == "ok"]
    lines = []
    crowded = []
    for row in rows:
        free, threads = free_cores(row), number(row.get("threads"))
        if free is not None and threads is not None and free < threads:
            crowded.append((row, free, int(threads)))
    if crowded:
        row, free, threads = max(crowded, key=lambda item: item[2] - item[1])
        suggest = max(1, free)
        lines.append(f"warning: the machine was busy: {len(crowded)} of {len(rows)} rows were measured with fewer "
                     f"free cores than threads (e.g. {row['block']} at {row['shape']}: {row.get('busy')} other "
                     f"runnable tasks on {row.get('cores')} cores, {threads} threads); the results may be unstable: "
                     f"rerun with --threads {suggest} or on an idle machine")
    wide = []
    for row in rows:
        for time_column, spread_column in TIMES.items():
            median, spread = number(row.get(time_column)), number(row.get(spread_column))
            if median and spread is not None and median > 0 and spread / median > SPREAD_LIMIT:
                wide.append((row, time_column, spread / median))
    if wide:
        row, column, ratio = max(wide, key=lambda item: item[2])
        threads = number(row.get("threads"))
        hint = "--threads 1 (or fewer threads than free cores)" if threads is None or threads > 1 else "a longer --min-time"
        lines.append(f"warning: {len(wide)} times have a spread (IQR) above {SPREAD_LIMIT:.0%} of their median "
                     f"(widest: {row['block']} at {row['shape']}: {column} IQR {ratio:.0%} of the median); the results "
                     f"may be unstable: rerun with {hint}, on an idle machine")
    return lines


__all__ = ["Load", "SPREAD_LIMIT", "free_cores", "other_runnable", "sample_load", "stability_warnings",
           "usable_cores", "worst"]
