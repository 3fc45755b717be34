"""``attnzoo report RESULTS... --out report.html``: one self-contained page to share. Never imports torch."""

from __future__ import annotations

from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import RegistryOption, registry_dirs, say

HELP = "\n\n".join([
    "Write one self-contained HTML page of result files (CSV or JSON of profile and sweep) to share.",
    "The page shows the environment of each file, a table of every row that sorts by any column (click "
    "its header) and filters by family and name, each block linked to its paper, and the log-log plots "
    "of the sweeps with their fitted exponents.",
    "Network rows that match a published ImageNet result (profiles/papers.toml, timm's results) add a section "
    "of what each block buys: the top-1 gained over the same source's baseline against the time and the MACs "
    "the block adds here, charted with the Pareto front (python benchmarks/accuracy.py makes such rows).",
    "Example: attnzoo report zoo.csv sweep.csv --out report.html",
    "Styles, script and plots are inside the file: it opens with no network.",
])


@app.command("report", help=HELP)
def report_command(
    results: List[str] = typer.Argument(..., help="Result files (.csv or .json)."),
    out: str = typer.Option("report.html", "--out", "--output", "-o", metavar="FILE",
                                   help="The page to write (.html); --output is the same option."),
    title: str = typer.Option("attnzoo report", "--title", help="The page's title."),
    registry: Optional[List[str]] = RegistryOption,
) -> None:
    from attnzoo.output import HTML_SUFFIXES, check_output, write_atomic
    from attnzoo.results.report import build_report

    check_output(out, "--out", HTML_SUFFIXES)
    page = build_report(results, registry_dirs(registry), title=title)
    try:
        write_atomic(out, page)
    except OSError as exc:
        from attnzoo.errors import ConfigError

        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    say(f"wrote {out} ({len(page) // 1024} KiB)")
