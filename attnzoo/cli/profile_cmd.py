"""``attnzoo profile``: parameters, MACs / FLOPs, latency and peak memory, one row per block and shape.

Data goes to stdout (or --output), progress and messages to stderr. The exit status is 0 when every row
succeeded, 1 when some row failed (its status says why), 2 for a usage error (unknown block, bad shape).
"""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import (DeviceOption, DtypeOption, FormatOption, OutputOption, RegistryOption, SetOption,
                                ThreadsOption, check_format, parse_overrides, registry_dirs, say)

HELP = "\n\n".join([
    'Profile blocks: parameters, MACs / FLOPs, latency and peak memory, one row per block and shape.',
    'Example: attnzoo profile cbam --shape 128,256,24,24',
    'MACs: one multiply-add is 1 MAC and 2 FLOPs (flops = 2 x macs). MACs count the multiply-adds of '
    'contractions: linear, matmul / bmm / baddbmm, einsum, every convolution (deformable too) and '
    'scaled_dot_product_attention (Q K^T and the weighted sum of V). Elementwise operators, activations, '
    'softmax, normalisation and pooling are not multiply-adds and count 0 on purpose. Any operator '
    'attnzoo has no formula for is named in the uncounted_ops column: a MAC count with an empty '
    'uncounted_ops is complete. Counted for one forward in eval mode.',
    'Latency: fwd_ms is the median time of a forward under inference mode (model.eval()); train_ms of a '
    'training step (forward and backward, gradients for the weights and the input); after warm-up, '
    'repeated for --min-time seconds; *_iqr_ms is the interquartile range, *_runs the number of timed '
    'calls.',
    'Efficiency: achieved FLOP/s of the forward (flops / fwd_ms) over device_gflops, the device\'s '
    'matrix-multiply GFLOP/s for the dtype and thread count, measured once per run (the best of a few '
    'large square matmuls); 0.25 means the forward runs at a quarter of the rate of a large matmul. '
    'Memory-bound blocks sit far below 1.',
    'Memory: fwd_peak_mib and train_peak_mib are the peak memory of one forward / training step in MiB '
    'above the inputs and weights already allocated (outputs, activations, gradients, temporaries). On '
    "CUDA from the allocator's peak statistics; on the CPU the peak of live tensor storages the call "
    "creates (not the process's RSS).",
    'Exit status: 0 when every row succeeded, 1 when a row failed (its status says why), 2 for a usage '
    'error.',
])


def _si(value: Any, unit: str = "") -> str:
    if value is None:
        return ""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3f} {prefix}{unit}"
    return f"{value:g} {unit}".strip()


def _ms(median: Any, iqr: Any) -> str:
    if median is None:
        return ""
    return f"{median:.4g} ± {iqr:.2g}" if iqr is not None else f"{median:.4g}"


def _table_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """What the table shows: counts with SI prefixes, time as median ± IQR. CSV and JSON keep raw columns."""
    shown = []
    for row in rows:
        shown.append({
            "block": row["block"], "shape": row["shape"], "status": row["status"],
            "params": row["params"],
            "MACs": _si(row["macs"]), "FLOPs": _si(row["flops"]),
            "fwd ms": _ms(row["fwd_ms"], row["fwd_iqr_ms"]), "fwd MiB": row["fwd_peak_mib"],
            "train ms": _ms(row["train_ms"], row["train_iqr_ms"]), "train MiB": row["train_peak_mib"],
            "efficiency": "" if row.get("efficiency") is None else f"{row['efficiency']:.3f}",
            "uncounted ops": row["uncounted_ops"],
        })
    columns = list(shown[0]) if shown else []
    if all(not r["uncounted ops"] for r in shown):
        columns.remove("uncounted ops")
    for column in ("fwd ms", "fwd MiB", "train ms", "train MiB", "efficiency"):
        if all(r[column] in ("", None) for r in shown):
            columns.remove(column)
    return shown, columns


def _caption(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    threads = f"{first['threads']} thread" + ("s" if first["threads"] != 1 else "")
    gflops = next((row["device_gflops"] for row in rows if row.get("device_gflops")), None)
    matmul = f" · matmul {gflops:g} GFLOP/s" if gflops else ""
    return (f"{first['device']} · {first['dtype']} · {threads} · torch {first['torch']}{matmul}\n"
            "1 MAC = 1 multiply-add = 2 FLOPs · time: median ± IQR · MiB: peak above inputs and weights · "
            "efficiency: achieved FLOP/s over the matmul GFLOP/s above")


@app.command("profile", help=HELP)
def profile_command(
    names: Optional[List[str]] = typer.Argument(
        None, help="Block names or wildcards ('*attention'); see 'attnzoo list'."),
    shape: Optional[List[str]] = typer.Option(
        None, "--shape", "-s", metavar="B,C,H,W",
        help="Input shape, repeatable: B,C,H,W, or B,N,C for token blocks."),
    all_blocks: bool = typer.Option(False, "--all", help="Profile every block in the registry."),
    overrides: Optional[List[str]] = SetOption,
    device: Optional[str] = DeviceOption,
    dtype: Optional[str] = DtypeOption,
    mode: Optional[str] = typer.Option(
        None, "--mode", help="infer (forward), train (forward + backward) or both (default: both)."),
    min_time: Optional[float] = typer.Option(
        None, "--min-time", metavar="SECONDS", help="Time each measurement for at least this long (default: 1.0)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Calls before timing starts (default: 3)."),
    threads: Optional[int] = ThreadsOption,
    suite: Optional[str] = typer.Option(
        None, "--suite", metavar="NAME|FILE", help="Run a suite: a TOML file, or a name from profiles/ (e.g. seeds)."),
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
    registry: Optional[List[str]] = RegistryOption,
) -> int:
    from attnzoo.cli.common import debug_enabled
    from attnzoo.errors import ConfigError
    from attnzoo.output import output_format, render
    from attnzoo.profiling.runner import COLUMNS, ProfileOptions, failed, profile_rows

    fmt = check_format(fmt)
    file_fmt = output_format(output, fmt)  # a path that cannot be written ends here, before any measurement
    dirs = registry_dirs(registry)
    cli_overrides = parse_overrides(overrides)
    given = {key: value for key, value in (("device", device), ("dtype", dtype), ("mode", mode),
                                           ("min_time", min_time), ("warmup", warmup),
                                           ("threads", threads)) if value is not None}
    title = "attnzoo profile"

    plans = []  # (block patterns, shapes, overrides): every plan is checked before anything runs
    if suite is not None:
        from attnzoo.profiling.suites import check_blocks, load_suite

        if names or all_blocks or shape:
            raise ConfigError("--suite takes its blocks and shapes from the suite: give no names, --all or --shape")
        loaded = load_suite(suite)
        check_blocks(loaded, dirs)
        settings = {**loaded.options, **given}
        title = f"attnzoo profile: {loaded.title}"
        plans = [(run.blocks, run.shapes, {**run.overrides, **cli_overrides}) for run in loaded.runs]
    else:
        settings = given
        patterns = list(names or []) + (["*"] if all_blocks else [])
        if not patterns:
            raise ConfigError("name at least one block (or --all, or --suite NAME); see 'attnzoo list'")
        plans = [(patterns, list(shape or []), cli_overrides)]
    options = ProfileOptions(raise_errors=debug_enabled(), **settings)
    progress = _ProgressLine()
    row_sets = [profile_rows(blocks, shapes, options, run_overrides, dirs, on_start=progress.start)
                for blocks, shapes, run_overrides in plans]

    rows = progress.run(row_sets)
    bad = [row for row in rows if failed(row)]
    for row in bad:
        say(f"attnzoo: {row['block']} at {row['shape']}: {row['status']}")
    if fmt == "table" and len(bad) < len(rows):  # with --output x.csv the table still shows on the terminal
        shown, columns = _table_rows(rows)
        render(shown, "table", columns=columns, title=title, caption=_caption(rows),
               output=output if file_fmt == "table" else None)
    if output is not None and file_fmt != "table":
        render(rows, file_fmt, columns=COLUMNS, output=output)
    elif output is None and fmt != "table":
        render(rows, fmt, columns=COLUMNS)
    if output:
        say(f"wrote {len(rows)} rows to {output}")
    return 1 if bad else 0


class _ProgressLine:
    """A progress bar on stderr, shown only on a terminal, naming the row being measured."""

    def __init__(self) -> None:
        self._progress = None
        self._task = None
        self._done = 0
        self._total = 0

    def start(self, block: str, shape: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{block} {shape} ({self._done + 1}/{self._total})")

    def run(self, row_sets) -> list[dict[str, Any]]:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        rows: list[dict[str, Any]] = []
        self._total = sum(r.total for r in row_sets)
        with Progress(TextColumn("profiling {task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:
            self._progress, self._task = progress, progress.add_task("", total=self._total)
            for row_set in row_sets:
                for row in row_set:
                    rows.append(row)
                    self._done += 1
                    progress.update(self._task, advance=1)
        self._progress = None
        return rows
