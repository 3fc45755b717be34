"""``attnzoo compare BASE NEW``: did a block get slower? Ratios NEW / BASE with noise-aware verdicts.

Never imports torch: it reads the files ``profile`` and ``sweep`` wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import FormatOption, OutputOption, bounded, check_format, count, say

HELP = "\n\n".join([
    "Compare two result files of profile or sweep: ratios NEW / BASE and noise-aware verdicts.",
    "Two files of train comparisons (OUT/runs.csv of 'attnzoo train --compare') pair up by block and seed "
    "and compare min_test_loss, last_test_loss, best_test_acc, epochs_to_target and min_train_loss (more "
    "or less by more than --threshold); training settings that differ between the files are named.",
    "Example: attnzoo compare eager.csv compiled.csv --fail-above 1.10",
    "Rows pair up on block, shape and --set overrides, plus any setting (dtype, device, threads, compile, "
    "...) that varies inside a file; settings that differ between the two files are what is compared and "
    "are named under the table. Rows without a partner are listed as 'only in base' / 'only in new'.",
    "Verdict on a time (fwd_ms, train_ms): slower or faster only when the difference exceeds both the "
    "larger interquartile range of the two measurements and --threshold; otherwise same (noise). MACs "
    "and parameters are exact: any difference counts (more, less). Peak memory uses --threshold.",
    "A training file (runs.csv) and a profile file are different kinds of result: refused.",
    "Exit status: 0; 1 when no row matched (the line says what each file holds), or with --fail-above R "
    "(at least 1) when a matched time is slower (beyond its spread) by a ratio above R; 2 for a usage error or "
    "an unreadable file.",
])


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _cell(row: dict[str, Any]) -> str:
    base, new, ratio, verdict = row.get("base"), row.get("new"), row.get("ratio"), row["verdict"]
    if base is None or new is None:
        return row.get("note") or ""
    colour = {"slower": "red", "more": "yellow", "faster": "green", "less": "cyan"}.get(verdict)
    shown = f"{ratio:.3g}x {verdict}" if ratio is not None else verdict
    if colour:
        shown = f"[{colour}]{shown}[/{colour}]"
    def value(v: float, iqr: Any) -> str:
        return _number(v) + (f" ± {iqr:.2g}" if iqr is not None else "")

    return f"{value(base, row.get('base_iqr'))} -> {value(new, row.get('new_iqr'))}  {shown}"


def _table(result, base_name: str, new_name: str, key: list[str]) -> None:
    """One line per pair with a column per metric, then the unmatched and failed rows. A cell wraps between
    its words, never inside a number; metrics that do not fit the width are left out and named."""
    from attnzoo.output import console as table_console
    from attnzoo.output import fit_columns, table_width, to_table

    console = table_console()  # the terminal's width, COLUMNS when piped (else 200)
    pairs: dict[tuple, dict[str, Any]] = {}
    others = []
    for row in result.rows:
        k = tuple(row.get(c) for c in key)
        if row["metric"]:
            pairs.setdefault(k, {c: str(row.get(c) or "") for c in key})[row["metric"]] = _cell(row)
        else:
            others.append(row)
    lines = [{**values, **{m: values.get(m, "") for m in result.metrics}} for values in pairs.values()]
    shown, left = fit_columns(lines, [*key, *result.metrics], table_width() or console.width, keep=len(key) + 1)
    caption = "BASE -> NEW (time: median ± IQR) · ratio NEW / BASE · a change inside the IQR is 'same'"
    if left:
        caption += f"\nleft out to fit: {', '.join(left)} (--metric chooses; --format csv or json holds every one)"
    console.print(to_table(lines, shown, title=f"attnzoo compare: {new_name} against {base_name}", caption=caption))
    if others:
        rest = [{**{c: str(row.get(c) or "") for c in key}, "verdict": row["verdict"], "note": str(row.get("note") or "")}
                for row in others]
        console.print(to_table(rest, [*key, "verdict", "note"], title="not compared"))


@app.command("compare", help=HELP)
def compare_command(
    base: str = typer.Argument(..., help="The reference result file (.csv or .json), or a folder of parts."),
    new: str = typer.Argument(..., help="The result file to judge against BASE."),
    metric: Optional[List[str]] = typer.Option(
        None, "--metric", "-m", metavar="NAME",
        help="Metrics to compare, repeatable or comma-separated (default: fwd_ms, train_ms, fwd_peak_mib, "
             "train_peak_mib, macs, params, those in both files)."),
    fail_above: Optional[float] = typer.Option(
        None, "--fail-above", metavar="RATIO", callback=bounded(1, what="a slowdown ratio such as 1.10"),
        help="Exit 1 when a matched time is slower than BASE by more than this ratio (e.g. 1.10), beyond its spread."),
    threshold: float = typer.Option(0.05, "--threshold", metavar="FRACTION", callback=bounded(0, what="a fraction"),
                                    help="Smallest relative change called a change."),
    match: Optional[List[str]] = typer.Option(
        None, "--match", metavar="COLUMN", help="Also pair rows on this column (repeatable), e.g. dtype."),
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
) -> int:
    from attnzoo.results.compare import compare
    from attnzoo.output import output_format, render
    from attnzoo.results import load_results, result_files

    fmt = check_format(fmt)
    file_fmt = output_format(output, fmt)
    base_rows, new_rows = load_results(base, "BASE"), load_results(new, "NEW")
    for given in (base, new):  # a folder: what it holds besides rows
        for line in result_files([given])[1] if Path(given).is_dir() else []:
            say(line)
    result = compare(base_rows, new_rows, metric, threshold=threshold, match=list(match or []))
    if result.matched == 0:  # nothing compared is no verdict: a gate built on it must not pass
        from attnzoo.results.compare import describe

        say(f"attnzoo: no row of NEW matched one of BASE on {', '.join(result.key)}: BASE {base} holds "
            f"{describe(base_rows, result.key)}, NEW {new} holds {describe(new_rows, result.key)}")
        return 1
    # Key columns that are empty everywhere (overrides in files without any) are left out.
    key = [c for c in result.key if c in ("block", "shape") or any(r.get(c) not in (None, "") for r in result.rows)]
    columns = [*key, *[c for c in result.columns if c not in result.key]]
    if fmt == "table":
        _table(result, base, new, key)
    if output is not None and file_fmt != "table":
        render(result.rows, file_fmt, columns=columns, output=output)
    elif output is not None:
        render(result.rows, "table", columns=columns, title="attnzoo compare", output=output)
    elif fmt != "table":
        render(result.rows, fmt, columns=columns)
    for column, (was, now) in result.differs.items():
        say(f"{column}: {was or '(none)'} -> {now or '(none)'}")
    counts: dict[str, int] = {}
    for row in result.rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    say(f"{result.matched} rows matched; " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    if output:
        say(f"wrote {count(len(result.rows), 'row')} to {output}")
    if fail_above is not None:
        worse = result.regressions(fail_above)
        for row in worse:
            say(f"attnzoo: {row['block']} at {row.get('shape') or 'seed ' + str(row.get('seed'))}: {row['metric']} {row['ratio']:.3g}x slower "
                f"(above --fail-above {fail_above:g})")
        return 1 if worse else 0
    return 0
