"""``--shard I/N``: which units this process runs when a campaign is split over a job array.

A unit belongs to shard ``h % N + 1``, h the hex digits of its id. Its id depends only on its own settings, so the shards are
disjoint, together cover every unit, and a unit stays in its shard when the grid grows (contiguous slices
would move every unit behind a new one). ``--shard auto`` reads the job array's index from the environment:
Slurm's ``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT`` (``--array=0-31`` or ``1-32``), or Kubernetes'
``JOB_COMPLETION_INDEX`` with the count given as ``--shard auto/N``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

from attnzoo.errors import ConfigError


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, unit_id: str) -> bool:
        return int(unit_id[1:], 16) % self.count == self.index - 1

    def select(self, units: Sequence) -> list:
        return [unit for unit in units if self.owns(unit.id)]


def _count(text: str, given: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(f"--shard {given}: N must be a whole number (--shard I/N, e.g. 2/8)") from None
    if count < 1:
        raise ConfigError(f"--shard {given}: N must be at least 1")
    return count


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """``"2/8"`` to Shard(2, 8); ``"auto"`` / ``"auto/N"`` from a job array's environment; None for None."""
    if text is None:
        return None
    env = os.environ if environ is None else environ
    given = text.strip()
    head, sep, tail = given.partition("/")
    if head.lower() == "auto":
        return _from_environment(given, tail if sep else None, env)
    if not sep:
        raise ConfigError(f"--shard {given}: expected I/N (e.g. 2/8: the second of eight shards) or auto")
    try:
        index = int(head)
    except ValueError:
        raise ConfigError(f"--shard {given}: I must be a whole number (--shard I/N, e.g. 2/8)") from None
    count = _count(tail, given)
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {given}: I counts from 1 to N ({count}), got {index}")
    return Shard(index, count)


def _from_environment(given: str, count_text: str | None, env: Mapping[str, str]) -> Shard:
    if env.get("SLURM_ARRAY_TASK_ID", "") != "":
        try:
            task, low = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        except (KeyError, ValueError):
            raise ConfigError(f"--shard {given}: SLURM_ARRAY_TASK_ID, _MIN and _COUNT must be set to numbers") from None
        if count_text is not None and _count(count_text, given) != count:
            raise ConfigError(f"--shard {given}: the Slurm array has {count} tasks, not {count_text}")
        index = task - low + 1
        if not 1 <= index <= count:
            raise ConfigError(f"--shard {given}: array task {task} is not in {low}..{low + count - 1}; "
                              "use an array without a step (--array=0-31), each task one shard")
        return Shard(index, count)
    if env.get("JOB_COMPLETION_INDEX", "") != "":
        if count_text is None:
            raise ConfigError(f"--shard {given}: JOB_COMPLETION_INDEX gives the index only; pass --shard auto/N "
                              "with N the job's completions")
        count = _count(count_text, given)
        try:
            index = int(env["JOB_COMPLETION_INDEX"]) + 1
        except ValueError:
            raise ConfigError(f"--shard {given}: JOB_COMPLETION_INDEX is not a number") from None
        if not 1 <= index <= count:
            raise ConfigError(f"--shard {given}: JOB_COMPLETION_INDEX {index - 1} is not below N ({count})")
        return Shard(index, count)
    raise ConfigError(f"--shard {given}: no job array here (neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX "
                      "is set); give --shard I/N")


__all__ = ["Shard", "parse_shard"]
