"""``attnzoo merge OUT PARTS...``: the parts of a campaign (shards, Ray runs) as one result file."""

from __future__ import annotations

from typing import List

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import say

HELP = "\n\n".join([
    "Merge the parts of a campaign into one result file: the rows of every unit once.",
    "Example: attnzoo merge zoo.csv parts/ (or zoo.csv part1.csv part2.csv ...)",
    "PARTS are result files of profile, sweep or train --compare, or folders holding them (the other files "
    "attnzoo writes there, such as settings, summaries, per-run metrics and figures, are skipped with a note). A unit found twice is kept once: "
    "an ok row over a failed one, then the later row (rows of different devices are never averaged). "
    "Refused: parts of different attnzoo versions, parts whose plans share no unit, and one unit id with "
    "different settings. Units of the plan (FILE.campaign.json beside each part) without a row are listed, "
    "and the exit status is then 1; compare and report read OUT, or a folder of parts directly.",
])


@app.command("merge", help=HELP)
def merge_command(
    out: str = typer.Argument(..., metavar="OUT", help="The merged file to write (.csv or .json)."),
    parts: List[str] = typer.Argument(..., metavar="PARTS...", help="Result files or folders of them."),
) -> int:
    from attnzoo.results.merge import merge_parts
    from attnzoo.campaign.rows import save_plan
    from attnzoo.errors import ConfigError
    from attnzoo.output import check_output, render
    from attnzoo.results import result_files

    fmt = check_output(out, "OUT", {".csv": "csv", ".json": "json"})  # before reading anything
    merged = merge_parts(parts, exclude=out)
    for line in result_files(parts, exclude=out)[1]:  # what attnzoo wrote besides rows: named, not merged
        say(line)
    if not merged.rows:
        raise ConfigError("the parts hold no rows")
    render(merged.rows, fmt, columns=merged.columns, output=out)
    save_plan(out, "merge", merged.plan)
    say(f"merged {len(merged.rows)} units from {len(merged.files)} files into {out}")
    if merged.repeated:
        say(f"{merged.repeated} rows repeated a unit: kept one row each (ok over failed, then the latest)")
    if merged.unplanned:
        say(f"no plan beside {', '.join(map(str, merged.unplanned[:3]))}: missing units of those parts cannot be listed")
    if merged.missing:
        shown = ", ".join(merged.missing[:10]) + (f" and {len(merged.missing) - 10} more" if len(merged.missing) > 10 else "")
        say(f"attnzoo: missing {len(merged.missing)} of {len(merged.plan)} units: {shown}")
        return 1
    return 0
