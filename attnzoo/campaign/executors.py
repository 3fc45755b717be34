"""Executors: where a list of units runs. One interface, so a command never knows where its rows came from.

``executor.run(units, before=..., progress=...)`` yields one row per unit, as each finishes (in any order),
each row stamped with its ``unit_id`` and where it ran (``host``, ``node``, ``device_index``). ``before(unit)``
may return a row instead of measuring the unit (a sweep's point skipped under --max-memory); it is called
just before the unit would start, so it sees the rows finished so far. Two executors exist: :class:`Local`
(this process, one unit after another) and :class:`attnzoo.campaign.ray_executor.RayExecutor` (Ray tasks).
A shard (``--shard I/N``) is a selection of the units, run by either.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from attnzoo.campaign.tasks import LOCAL_RAY, LOST, Executor, Progress, RunContext, failed_row, stamp
from attnzoo.campaign.units import runner_for
from attnzoo.unit import Unit


class Local:
    """Run the units here, one after another, in the order given."""

    remote = False

    def __init__(self, raise_errors: bool = False, out: str | None = None):
        self.context = RunContext(raise_errors=raise_errors, out=out)

    def run(self, units: Sequence[Unit], before=None, progress=None) -> Iterator[dict[str, Any]]:
        for unit in units:
            row = before(unit) if before is not None else None
            if row is None:
                if progress is not None:
                    progress.started(unit)
                row = runner_for(unit.kind)(unit, self.context)
            stamp(row, unit)
            if progress is not None:
                progress.finished(unit, row)
            yield row


def make_executor(ray_address: str | None, raise_errors: bool = False, out: str | None = None,
                  **ray_options: Any) -> Executor:
    """The executor a command asked for: Ray at ``ray_address`` (host:port, ray://host:port, auto, or
    :data:`LOCAL_RAY` for a Ray started here), or this process (None). ``out``: the folder units write their
    own files under (:class:`RunContext`). An address where no cluster answers, or Ray not installed, ends
    here with a ConfigError."""
    if ray_address is None:
        return Local(raise_errors=raise_errors, out=out)
    from attnzoo.campaign.ray_executor import RayExecutor

    return RayExecutor(ray_address, raise_errors=raise_errors, out=out, **ray_options)


__all__ = ["Executor", "LOCAL_RAY", "LOST", "Local", "Progress", "RunContext", "failed_row", "make_executor", "stamp"]
