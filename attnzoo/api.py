"""The Python API's drivers: what ``attnzoo.profile`` runs, above the campaign (docs/ARCHITECTURE.md).

:func:`profile_rows` plans profile units (the runner's :func:`~attnzoo.profiling.runner.plan_units`: names,
shapes and options checked first, an :class:`~attnzoo.errors.AttnzooError` before anything runs), then runs
them here through the campaign's :class:`~attnzoo.campaign.executors.Local` executor, the path every command
takes, and yields each row as it finishes. A row that cannot run carries the reason in ``status``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from attnzoo.campaign.executors import Local
from attnzoo.columns import COLUMNS
from attnzoo.profiling.runner import ProfileOptions, plan_units
from attnzoo.rowdata import with_deltas


def profile_rows(names: Iterable[str], shapes: Iterable[str | Sequence[int]], options: ProfileOptions | None = None,
                 overrides: Mapping[str, Any] | None = None, registry: Sequence[str | os.PathLike] = (),
                 on_start: Callable[[str, str], None] | None = None, networks: Sequence[str] = (),
                 placement: str | None = None, stages: str | Sequence[int] | None = None) -> "RowIterator":
    """Rows for every block in ``names`` (names or wildcards) at every shape, in that order.

    Names, shapes and options are checked now (raising AttnzooError); the returned iterator then measures
    one row per ``next``. ``on_start(block, shape)`` is called before each row (for progress). With
    ``networks`` (names or wildcards) the rows are network rows: per network and shape, the plain network's
    row, then one per block placed by ``placement`` in ``stages``, with the differences to the plain row.
    """
    checked = (options or ProfileOptions()).checked()
    units = plan_units(names, shapes, checked, overrides, registry, networks, placement, stages)

    class _Start:
        def started(self, unit) -> None:
            if on_start is not None:
                on_start(unit.block, unit.shape_text)

        def finished(self, unit, row) -> None:
            pass

    rows = Local(raise_errors=checked.raise_errors).run(units, progress=_Start())
    return RowIterator(with_deltas(rows) if networks else rows, total=len(units))


class RowIterator(Iterator[dict]):
    """The rows still to measure; ``total`` says how many there are in all."""

    def __init__(self, rows: Iterator[dict[str, Any]], total: int):
        self._rows = rows
        self.total = total

    def __iter__(self) -> "RowIterator":
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._rows)


def to_frame(rows: Iterable[Mapping[str, Any]]):
    """Rows as a pandas DataFrame with the columns of :data:`attnzoo.columns.COLUMNS`."""
    import pandas as pd

    return pd.DataFrame([dict(row) for row in rows], columns=list(COLUMNS))


__all__ = ["RowIterator", "profile_rows", "to_frame"]
