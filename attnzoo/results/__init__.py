"""Results: reading, comparing, reporting and merging the files attnzoo writes. Reads files only: it imports
neither the campaign that wrote them nor the runners that measured them (docs/ARCHITECTURE.md), and never
torch.

* :mod:`~attnzoo.results.files` — one CSV or JSON file of rows.
* :mod:`~attnzoo.results.merge` — the parts of a campaign (shards, Ray runs, resumed files) as one set of rows.
* :mod:`~attnzoo.results.compare` — two sets of rows, matched row by row (``attnzoo compare``).
* :mod:`~attnzoo.results.report` — an HTML page of any result files (``attnzoo report``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from attnzoo.columns import ENV_COLUMNS, MEASURED
from attnzoo.errors import ConfigError
from attnzoo.results.files import SIDE_KINDS, environment, file_kind, load_file, result_files, rows_beside
from attnzoo.results.merge import load_parts
from attnzoo.rowdata import number, text, typed_cell


def load_results(path: str | os.PathLike, role: str = "", allow_empty: bool = False) -> list[dict[str, Any]]:
    """The rows of a result file, or of a folder of a campaign's parts merged (as ``attnzoo merge`` would).
    ``role`` (e.g. "BASE") prefixes the one-line error a bad file gives; ``allow_empty`` accepts a file of no
    rows (a shard that owns no unit)."""
    if Path(path).is_dir():
        try:
            return load_parts(path)
        except ConfigError as exc:
            raise ConfigError(f"{role} {exc}".strip()) from None
    return load_file(path, role, allow_empty)


__all__ = ["ENV_COLUMNS", "MEASURED", "SIDE_KINDS", "environment", "file_kind", "load_file", "load_parts",
           "load_results", "number", "result_files", "rows_beside", "text", "typed_cell"]
