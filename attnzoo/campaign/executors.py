"""Executors: where a list of units runs. One interface, so a command never knows where its rows came from.

``executor.run(units, before=..., progress=...)`` yields one row per unit, as each finishes (in any order),
each row stamped with its ``unit_id`` and where it ran (``host``, ``node``, ``device_index``). ``before(unit)``
may return a row instead of measuring the unit (a sweep's point skipped under --max-memory); it is called
just before the unit would start, so it sees the rows finished so far. Two executors exist: :class:`Local`
(this process, one unit after another) and :class:`attnzoo.campaign.ray_executor.RayExecutor` (Ray tasks).
A shard (``--shard I/N``) is a selection of the units, run by either.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from attnzoo.campaign.units import Unit, runner_for

#: A row that is not the block's outcome but the campaign's: its worker or node died beyond the retries.
#: ``--resume`` measures such units again.
LOST = "lost"


@dataclass(frozen=True)
class RunContext:
    """What a unit's runner gets besides the unit: set by the executor, not part of the unit's id."""

    raise_errors: bool = False  # --debug: re-raise a block's error instead of recording it
    threads: int | None = None  # CPU threads to use when the unit's settings leave them to the executor
    calibration: Callable[[Any], Any] | None = None  # options -> the device's ceilings (None: the runner's own)
    out: str | None = None  # the folder a unit writes its own files under (a training run's curves, checkpoints)


class Progress(Protocol):
    def started(self, unit: Unit) -> None: ...

    def finished(self, unit: Unit, row: dict[str, Any]) -> None: ...


class Executor(Protocol):
    #: True when units run in other processes or machines (the driver then checks no local device).
    remote: bool

    def run(self, units: Sequence[Unit], before: Callable[[Unit], dict | None] | None = None,
            progress: Progress | None = None) -> Iterator[dict[str, Any]]: ...


def stamp(row: dict[str, Any], unit: Unit, node: str = "", device_index: str = "") -> dict[str, Any]:
    """Write into ``row`` which unit it is and where it ran."""
    row["unit_id"] = unit.id
    row["host"] = socket.gethostname()
    row["node"] = node
    row["device_index"] = device_index
    return row


def failed_row(unit: Unit, status: str) -> dict[str, Any]:
    """A row for a unit that produced none (lost, or a bug outside the block), with the unit's identity."""
    from attnzoo import __version__

    return {"block": unit.block, "shape": unit.shape_text, "status": status, "attnzoo_version": __version__,
            **{key: value for key, value in unit.settings if key in ("mode", "dtype", "device", "threads")}}


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


#: ``--ray`` with no address: a Ray started in this process for the run.
LOCAL_RAY = "local"


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
