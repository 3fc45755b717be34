"""The complexity atlas: every family against self-attention, over N = H*W, with the crossover N per metric.

Runs ``attnzoo sweep --suite complexity-atlas --baseline mha`` (batch 1, 64 channels, H = W from 16 to 128,
forward only), writes the plot to ``docs/complexity-atlas.png`` and, with ``--readme``, rewrites the README
between ``<!-- atlas:start -->`` and ``<!-- atlas:end -->``: per block its family, the fitted exponent of
MACs, forward time and forward peak memory against N, and the crossover N against the baseline per metric,
followed by two sentences written from those figures. Points the memory guard skips (``--max-memory``) are
listed under the table; a point that fails is listed too and the run goes on.

    python benchmarks/atlas.py [--readme] [--suite NAME|FILE] [--plot FILE] [--max-memory SIZE] [--device cuda]
                               [--json FILE]

The full grid takes a long while on a small CPU (mha at N = 16,384 is about 35 GMACs a forward); use a
suite file with a smaller grid to try the script.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import common
from common import machine_line, parser, write_json
from attnzoo.growth import crossover_label  # noqa: E402  (common has put the checkout on sys.path)

README = common.ROOT / "README.md"
START, END = "<!-- atlas:start -->", "<!-- atlas:end -->"
SUITE = "complexity-atlas"
PLOT = "docs/complexity-atlas.png"
BASELINE = "mha"
METRICS = ("macs", "fwd_ms", "fwd_peak_mib")
WORDS = {"macs": "MACs", "fwd_ms": "forward time", "fwd_peak_mib": "forward peak memory"}


def run_sweep(suite: str, plot: str, baseline: str, max_memory: str | None, device: str | None,
              out: Path) -> tuple[list[dict], float]:
    """The sweep's rows (read back from its CSV) and its wall time. Failed points do not stop it."""
    args = ["sweep", "--suite", suite, "--baseline", baseline, "--output", str(out), "--format", "csv",
            "--plot", plot, *(["--max-memory", max_memory] if max_memory else []),
            *(["--device", device] if device else [])]
    print(f"$ attnzoo {' '.join(args)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "attnzoo", *args], cwd=common.ROOT,
                          env={**os.environ, "COLUMNS": "140"})
    seconds = time.perf_counter() - start
    # Exit 1 means some point failed (recorded in its row); anything else, or no file, is a real failure.
    if done.returncode not in (0, 1) or not out.exists():
        raise SystemExit(f"attnzoo sweep failed (exit {done.returncode})")
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle)), seconds


def _n(x: float) -> str:
    return f"{round(x):,}"


def _names(blocks: Sequence[str]) -> str:
    quoted = [f"`{b}`" for b in blocks]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def cell(result: dict[str, Any] | None) -> str:
    """A crossover for the README: sweep's label, saying "(crosses back)" after "below N"."""
    if result is None:
        return ""
    label = crossover_label(result)
    return f"{label} (crosses back)" if result["verdict"] == "below" else label


def metric_sentence(results: Sequence[dict[str, Any]], metric: str, baseline: str, top: int) -> str:
    """What the crossovers of one metric say, as a clause: who overtakes the baseline, from where, and who
    is always or never cheaper within the grid."""
    mine = [r for r in results if r["metric"] == metric and r["verdict"] != "no data"]
    above = sorted((r for r in mine if r["verdict"] == "above"), key=lambda r: r["crossover"])
    always = [r["block"] for r in mine if r["verdict"] == "always"]
    never = [r["block"] for r in mine if r["verdict"] == "never"]
    equal = [r["block"] for r in mine if r["verdict"] == "equal"]
    back = [r for r in mine if r["verdict"] in ("below", "mixed")]
    parts = []
    if always:
        parts.append(f"{_names(always)} {'is' if len(always) == 1 else 'are'} cheaper than `{baseline}` at every N")
    if above:
        if len(above) == 1:
            parts.append(f"`{above[0]['block']}` overtakes `{baseline}` from N = {_n(above[0]['crossover'])}")
        else:
            parts.append(f"{len(above)} blocks overtake `{baseline}` between N = {_n(above[0]['crossover'])} "
                         f"(`{above[0]['block']}`) and N = {_n(above[-1]['crossover'])} (`{above[-1]['block']}`)")
    if back:
        parts.append("only part of the grid favours " + ", ".join(
            f"`{r['block']}` (N {' and '.join(f'{_n(a)}-{_n(b)}' for a, b in r['cheaper_on'])})" for r in back))
    if equal:
        parts.append(f"{_names(equal)} cost{'s' if len(equal) == 1 else ''} the same as `{baseline}`")
    if never:
        parts.append(f"{_names(never)} {'is' if len(never) == 1 else 'are'} never cheaper up to N = {_n(top)}")
    if not parts:
        return f"no block could be compared with `{baseline}`"
    return parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + ", and " + parts[-1]


def section(rows: list[dict], results: list[dict], fits: dict, families: dict, complexity: dict,
            baseline: str, info: dict, seconds: float, command: str, plot: str) -> str:
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    ns = sorted({int(r["shape"].split(",")[2]) * int(r["shape"].split(",")[3]) for r in rows})
    top = ns[-1]
    by = {(r["block"], r["metric"]): r for r in results}
    fixed = {tuple(r["shape"].split(",")[:2]) for r in rows}
    where = f"Batch {next(iter(fixed))[0]}, {next(iter(fixed))[1]} channels, " if len(fixed) == 1 else ""
    lines = [START,
             f"{where}N = H*W from {_n(ns[0])} to {_n(top)}, forward only, against `{baseline}`, "
             f"on {machine_line(info)} ({seconds / 60:.0f} min; regenerated by `python benchmarks/atlas.py "
             "--readme`):", "", "```", command, "```", "",
             "| block | family | card | MACs ~ N^k | time ~ N^k | memory ~ N^k | crossover N: MACs | time | memory |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def exponent(block: str, metric: str) -> str:
        k = fits.get((block, metric))
        return "" if k is None else f"{k:.2f}"

    for block in blocks:
        crossings = (["baseline"] * 3 if block == baseline
                     else [cell(by.get((block, metric))) for metric in METRICS])
        lines.append(f"| `{block}` | {families[block]} | `{complexity[block]}` | "
                     + " | ".join(exponent(block, m) for m in METRICS) + " | " + " | ".join(crossings) + " |")
    missing = [r for r in rows if r["status"] != "ok"]
    lines += ["", "A crossover is the N from which the block costs less than the baseline, interpolated on "
              "log-log between grid points; \"always\" and \"never\" hold within the grid."]
    if missing:
        lines.append("Not measured: " + "; ".join(f"`{r['block']}` at {r['shape']} ({r['status'].split(':')[0]})"
                                                 for r in missing) + ".")
    lines += ["", f"![cost against N, one panel per metric, crossovers marked]({plot})", "",
              f"In MACs, {metric_sentence(results, 'macs', baseline, top)}. "
              f"Measured on this machine, in forward time {metric_sentence(results, 'fwd_ms', baseline, top)}; "
              f"in forward peak memory {metric_sentence(results, 'fwd_peak_mib', baseline, top)}.",
              END]
    return "\n".join(lines)


def main(argv=None) -> dict:
    from attnzoo.registry import get_spec
    from attnzoo.growth import crossovers, fit_rows

    p = parser(__doc__.split("\n")[0])
    p.add_argument("--readme", action="store_true", help="rewrite README.md's atlas section")
    p.add_argument("--suite", default=SUITE, help=f"sweep suite, a name or a file [default: {SUITE}]")
    p.add_argument("--plot", default=PLOT, help=f"where the figure goes [default: {PLOT}]")
    p.add_argument("--baseline", default=BASELINE, help=f"the block the others are compared with [default: {BASELINE}]")
    p.add_argument("--max-memory", help="passed to attnzoo sweep [default: its own, 3/4 of the device's memory]")
    p.add_argument("--device", help="cpu or cuda, passed to attnzoo sweep [default: the suite's, cpu]")
    args = p.parse_args(argv)
    info = common.print_header("atlas: where each family of attention beats self-attention", [args.device or "cpu"])
    with tempfile.TemporaryDirectory() as folder:
        rows, seconds = run_sweep(args.suite, args.plot, args.baseline, args.max_memory, args.device,
                                  Path(folder) / "atlas.csv")
    results = crossovers(rows, args.baseline, "hw", METRICS)
    fits = {(f["block"], f["metric"]): f["exponent"] for f in fit_rows(rows, "hw", METRICS)}
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    specs = {b: get_spec(b) for b in blocks}
    suite = args.suite if args.suite == SUITE else Path(args.suite).stem
    command = (f"attnzoo sweep --suite {suite} --baseline {args.baseline} --plot {args.plot}"
               + (f" --device {args.device}" if args.device else ""))
    text = section(rows, results, fits, {b: s.family for b, s in specs.items()},
                   {b: s.complexity for b, s in specs.items()}, args.baseline, info, seconds, command, args.plot)
    print(text)
    if args.readme:
        common.replace_between(README, START, END, text)
    payload = {"benchmark": "atlas", "machine": info, "suite": args.suite, "baseline": args.baseline,
               "seconds": seconds, "rows": rows, "crossovers": results,
               "exponents": [{"block": b, "metric": m, "exponent": k} for (b, m), k in fits.items()]}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
