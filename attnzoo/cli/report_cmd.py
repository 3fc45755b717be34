"""``attnzoo report RESULTS... --out report.html``: one self-contained page to share. Never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import RegistryOption, registry_dirs, say

DEFAULT_OUT = "report.html"

HELP = "\n\n".join([
    "Write one self-contained HTML page of result files (CSV or JSON of profile, sweep and train --compare) "
    "to share.",
    "The page shows the environment of each file, a table of every row that sorts by any column (click "
    "its header) and filters by family and name, each block linked to its paper, and the log-log plots "
    "of the sweeps with their fitted exponents.",
    "Network rows that match a published ImageNet result (profiles/papers.toml, timm's results) add a section "
    "of what each block buys: the top-1 gained over the same source's baseline against the time and the MACs "
    "the block adds here, charted with the Pareto front (python benchmarks/accuracy.py makes such rows).",
    "Example: attnzoo report zoo.csv sweep.csv --out report.html",
    "RESULTS may be folders (the parts of a campaign, the OUT of train --compare). Files attnzoo writes beside "
    "rows (FILE.settings.json, FILE.campaign.json, a comparison's summary.csv, a run's metrics.csv, figures) "
    "are skipped, each with a note on stderr.",
    "Styles, script and plots are inside the file: it opens with no network.",
    "Without --out the page is report.html, and an existing report.html is refused unless --overwrite; a file "
    "named with --out is written.",
])


@app.command("report", help=HELP)
def report_command(
    results: List[str] = typer.Argument(..., help="Result files (.csv or .json) or folders of them."),
    out: Optional[str] = typer.Option(None, "--out", "--output", "-o", metavar="FILE",
                                      help="The page to write (.html) (default: report.html, refused if it exists "
                                           "unless --overwrite); --output is the same option."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report.html when --out is not given."),
    title: str = typer.Option("attnzoo report", "--title", help="The page's title."),
    registry: Optional[List[str]] = RegistryOption,
) -> None:
    from attnzoo.output import HTML_SUFFIXES, check_output, write_atomic
    from attnzoo.results.report import build_report

    named = out is not None
    out = out if named else DEFAULT_OUT
    check_output(out, "--out", HTML_SUFFIXES)
    page = build_report(results, registry_dirs(registry), title=title, note=say)  # unreadable inputs are said first
    if not named and Path(out).exists() and not overwrite:  # a page nobody named may be an earlier report
        from attnzoo.errors import ConfigError

        raise ConfigError(f"{out} exists (an earlier report?): pass --overwrite to replace it, or --out FILE")
    try:
        write_atomic(out, page)
    except OSError as exc:
        from attnzoo.errors import ConfigError

        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    say(f"wrote {out} ({len(page) // 1024} KiB)")
