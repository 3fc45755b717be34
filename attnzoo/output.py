"""Rows (a list of dicts with the same keys) to a rich table, CSV or JSON; output paths checked before any
work starts and files written whole (a temporary name in the same folder, then renamed).

Never imports torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from attnzoo.errors import ConfigError

FORMATS = ("table", "csv", "json")
#: What a data file (--output) holds, from its suffix: .txt receives the rich table as text.
DATA_SUFFIXES = {".csv": "csv", ".json": "json", ".txt": "table"}
#: Images matplotlib writes (--plot).
PLOT_SUFFIXES = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: The report (--out of attnzoo report).
HTML_SUFFIXES = {".html": "html", ".htm": "html"}


def _names(suffixes: Iterable[str]) -> str:
    items = list(suffixes)
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


def check_folder(path: str | os.PathLike, option: str) -> Path:
    """The folder that will receive ``path``: it must exist, be a folder and accept a new file.

    Raises ConfigError (one line naming ``option``) otherwise. Writability is tried, not guessed from the
    mode bits: a temporary file is created and removed (this also catches read-only file systems).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, not a file")
    if not folder.exists():
        raise ConfigError(f"{option} {path}: folder '{folder}' does not exist")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: '{folder}' is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".attnzoo-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write in folder '{folder}' ({exc.strerror or exc})") from None
    return folder


def check_output(path: str | os.PathLike, option: str, suffixes: Mapping[str, str]) -> str:
    """Check ``path`` before any work: its suffix must be one of ``suffixes`` and its folder writable.

    Returns the format the suffix names (``suffixes[suffix]``).
    """
    if Path(path).is_dir():
        raise ConfigError(f"{option} {path}: is a folder, not a file")
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise ConfigError(f"{option} {path}: unknown format ({shown}); use {_names(suffixes)}")
    check_folder(path, option)
    return suffixes[suffix]


def output_format(path: str | os.PathLike | None, fmt: str, option: str = "--output") -> str:
    """The format a data file is written in, checked before any work starts.

    With no ``path`` it is ``fmt`` (stdout). Otherwise the suffix decides (.csv, .json, or .txt for the
    table); an explicit --format csv or json must agree with it, and lets any other suffix through.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format '{fmt}' is not one of {', '.join(FORMATS)}")
    if path is None:
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in DATA_SUFFIXES and fmt in ("csv", "json"):
        check_folder(path, option)
        return fmt
    known = check_output(path, option, DATA_SUFFIXES)
    if fmt != "table" and known != fmt:
        raise ConfigError(f"--format {fmt} does not match {option} {path} (its suffix says {known})")
    return known


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file in the same folder, then a rename.

    An interrupted write leaves the previous file (or none), never half a file.
    """
    target = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it an ordinary file's mode
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
    """A cell as JSON: an empty text or a non-finite number is null (CSV can only leave them empty)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and value == "":
        return None
    return value


def to_json(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    return json.dumps([{c: _json_safe(row.get(c)) for c in columns} for row in rows], indent=2) + "\n"


#: A cell that must never be split: a number, a shape, a size or a time (median ± IQR), a ratio.
_WHOLE = re.compile(r"^[-+]?[\d.,:xe+\-]*\d[\d.,:xe+\-]*( ?[kMGT]?[A-Za-z/]{0,5})?( ± [\d.e+\-]+)?x?$")


def _whole(cells: Sequence[str]) -> bool:
    """Whether a column's cells must stay on one line: every cell is one word or a number with its unit."""
    return all(" " not in cell or _WHOLE.match(cell) for cell in cells)


def table_width(wide_enough: int | None = None) -> int | None:
    """The width tables are drawn at on stdout: the terminal's (rich finds it; COLUMNS overrides it); when
    piped or redirected, COLUMNS, else 200 rather than rich's 80. With ``wide_enough`` (--wide) never less."""
    import sys

    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    if width is None and not sys.stdout.isatty():
        width = 200
    if wide_enough is not None:
        from rich.console import Console

        width = max(width or Console().width, wide_enough)
    return width


def _needed(header: str, cells: Sequence[str]) -> int:
    """The width a column takes: its header or its longest cell whole (a wrapping column: its longest word, at
    least 12 characters when some cell is longer), plus padding and a rule."""
    if _whole(cells):
        return max([len(header), *map(len, cells)]) + 3
    words = max([len(header), *(len(word) for cell in cells for word in cell.split())])
    return max(words, min(12, max(map(len, cells)))) + 3


def table_needs(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> int:
    """The width the table of ``rows`` needs so that no cell is split inside a number or a word."""
    return 1 + sum(_needed(c, [_cell(r.get(c)) for r in rows]) for c in columns)


def fit_columns(rows: Sequence[dict[str, Any]], columns: Sequence[str], width: int | None,
                keep: int = 3) -> tuple[list[str], list[str]]:
    """The columns that fit ``width`` (the first ``keep`` always stay; the last go first), and those left out."""
    kept = list(columns)
    if width is None:
        return kept, []
    left: list[str] = []
    while len(kept) > keep and table_needs(rows, kept) > width:
        left.insert(0, kept.pop())
    return kept, left


def to_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None,
             caption: str | None = None):
    from rich.table import Table

    columns = list(columns or (rows[0].keys() if rows else []))
    table = Table(title=title, caption=caption, header_style="bold")
    for column in columns:
        numeric = any(isinstance(r.get(column), (int, float)) and not isinstance(r.get(column), bool) for r in rows)
        cells = [_cell(r.get(column)) for r in rows]
        if _whole(cells):  # numbers and shapes are never split: the column keeps its width, the others give way
            table.add_column(column, justify="right" if numeric else "left", no_wrap=True,
                             min_width=max([len(column), *map(len, cells)]))
        else:  # it wraps between its words, never inside one (a number)
            table.add_column(column, justify="right" if numeric else "left", overflow="fold",
                             min_width=max([len(word) for cell in cells for word in cell.split()] or [1]))
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def console(width: int | None = None, **options: Any):
    """A rich Console for tables on stdout, at :func:`table_width` unless ``width`` is given."""
    from rich.console import Console

    return Console(width=width if width is not None else table_width(), **options)


def render(rows: Sequence[dict[str, Any]], fmt: str, columns: Iterable[str] | None = None,
           title: str | None = None, caption: str | None = None, output: str | None = None,
           fit: bool = False, wide: bool = False) -> None:
    """Write ``rows`` as ``fmt`` to ``output`` (a path) or stdout; a table goes to the terminal.

    A table with ``fit`` leaves out its last columns (never the first three) where the width does not hold
    them, and says which under it; with ``wide`` the table is drawn as wide as it needs."""
    columns = list(columns) if columns is not None else None
    if fmt == "table":
        columns = columns if columns is not None else list(rows[0].keys() if rows else [])
        width = 200 if output else table_width(table_needs(rows, columns) if wide else None)
        if width is None:  # a terminal: its width
            from rich.console import Console

            width = Console().width
        if fit and not wide:
            columns, left = fit_columns(rows, columns, width)
            if left:
                note = (f"left out to fit {width} columns: {', '.join(left)} (--wide or --columns shows them; "
                        "--format csv or json holds every column)")
                caption = f"{caption}\n{note}" if caption else note
        table = to_table(rows, columns, title=title, caption=caption)
        if output:
            buffer = io.StringIO()
            console(width, file=buffer).print(table)
            _write(output, buffer.getvalue())
        else:
            console(width).print(table)
        return
    text = to_csv(rows, columns) if fmt == "csv" else to_json(rows, columns)
    if output:
        _write(output, text)
    else:
        import sys

        sys.stdout.write(text)


def save_figure(fig, path: str | os.PathLike, **options: Any) -> None:
    """``fig.savefig`` to ``path`` through :func:`write_atomic` (the format from the suffix; png without one).

    ``path`` may also be an open binary stream, which receives a PNG.
    """
    if hasattr(path, "write"):
        fig.savefig(path, format="png", **options)
        return
    suffix = Path(path).suffix.lower().lstrip(".") or "png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format=suffix, **options)
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_dir(path: str | os.PathLike, option: str) -> None:
    """A folder that will be created if needed: it must be a folder if it exists, and its nearest existing
    ancestor a writable folder."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a folder")
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: '{existing}' is not a folder")
    check_folder(existing / "probe", option)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(path: str | os.PathLike, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
