"""What every executor shares: the context a unit's runner gets, how a row is stamped with where it ran,
and the row of a unit that produced none. Executors import this; it imports none of them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from attnzoo.unit import Unit

#: ``--ray`` with no address: a Ray started in this process for the run.
LOCAL_RAY = "local"

#: A row that is not the block's outcome but the campaign's: its worker or node died beyond the retries.
#: ``--resume`` measures such units again.
LOST = "lost"


@dataclass(frozen=True)
class RunContext:
    """What a unit's runner gets besides the unit: set by the executor, not part of the unit's id."""

    raise_errors: bool = False  # --debug: re-raise a block's error instead of recording it
    threads: int | None = None  # CPU threads to use when the unit's settings leave them to the executor
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
    from attnzoo._version import __version__

    return {"block": unit.block, "shape": unit.shape_text, "status": status, "attnzoo_version": __version__,
            **{key: value for key, value in unit.settings if key in ("mode", "dtype", "device", "threads")}}


__all__ = ["Executor", "LOCAL_RAY", "LOST", "Progress", "RunContext", "failed_row", "stamp"]
