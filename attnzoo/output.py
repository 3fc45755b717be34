"""Rows (a list of dicts with the same keys) to a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable, Sequence

FORMATS = ("table", "csv", "json")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    return json.dumps([{c: _json_safe(row.get(c)) for c in columns} for row in rows], indent=2) + "\n"


def to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None,
             caption: str | None = None):
    from rich.table import Table

    columns = list(columns or (rows[0].keys() if rows else []))
    table = Table(title=title, caption=caption, header_style="bold")
    for column in columns:
        numeric = any(isinstance(r.get(column), (int, float)) and not isinstance(r.get(column), bool) for r in rows)
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def render(rows: Sequence[dict[str, Any]], fmt: str, columns: Iterable[str] | None = None,
           title: str | None = None, caption: str | None = None, output: str | None = None) -> None:
    """Write ``rows`` as ``fmt`` to ``output`` (a path) or stdout; a table goes to the terminal."""
    columns = list(columns) if columns is not None else None
    if fmt == "table":
        from rich.console import Console

        table = to_table(rows, columns, title=title, caption=caption)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                Console(file=handle, width=200).print(table)
        else:
            import sys

            # Piped or redirected, rich would fold the table to 80 columns: give it room instead.
            Console(width=None if sys.stdout.isatty() else 200).print(table)
        return
    text = to_csv(rows, columns) if fmt == "csv" else to_json(rows, columns)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        import sys

        sys.stdout.write(text)
