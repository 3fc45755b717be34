"""``attnzoo profile``: parameters, MACs / FLOPs, latency and peak memory, one row per block and shape.

Data goes to stdout (or --output), progress and messages to stderr. The exit status is 0 when every row
succeeded, 1 when some row failed (its status says why), 2 for a usage error (unknown block, bad shape).
"""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import (AmpOption, ChannelsLastOption, CompileModeOption, CompileOption, DeviceOption,
                                DtypeOption, FormatOption, NetworkOption, OutputOption, PlacementOption, RayOption,
                                ColumnsOption, ExportDirOption, InputScaleOption, OverwriteOption, RecalibrateOption,
                                RegistryOption, RetryFailedOption, RuntimeOption, SdpaBackendOption, SetOption,
                                ShardOption, StagesOption, ThreadsOption, WideOption, bounded, check_format, check_fresh,
                                check_runs, count, mode_settings, network_options, registry_dirs, runtime_settings, say,
                                split_plans)

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
    'calls. Each row records the machine\'s load: load (1-minute load average), busy (other runnable tasks) and '
    'cores; when a row had fewer free cores than threads, or a spread above 10% of its median, the footer '
    '(stderr) warns that the results may be unstable and suggests --threads.',
    'Roofline: bytes_min is the compulsory traffic of a forward (inputs, outputs and parameters once each), '
    'bytes_eager what the operators of an eager forward read and write; intensity = flops / bytes_min. '
    'roofline_ms is the fastest forward the device allows: the slower of flops at the best matmul rate '
    '(device_gflops) and bytes_min at the bandwidth measured for the row\'s working set (bandwidth_gbs). '
    'of_limit = roofline_ms / fwd_ms: 1.0 is at the hardware\'s limit; bound says which ceiling binds. '
    'Both ceilings are measured once per run. efficiency is achieved FLOP/s over the matmul rate.',
    'Modes: --compile (torch.compile; compile_s is the time of the first calls), --amp (autocast to '
    'bfloat16 on CPU, float16 on CUDA), --channels-last; each row records its modes. fwd_img_s and '
    'train_img_s are images per second.',
    'Memory: fwd_peak_mib and train_peak_mib are the peak memory of one forward / training step in MiB '
    'above the inputs and weights already allocated (outputs, activations, gradients, temporaries). On '
    "CUDA from the allocator's peak statistics; on the CPU the peak of live tensor storages the call "
    "creates (not the process's RSS).",
    'Campaigns: every block x shape x settings is a unit with a stable id (the unit_id column); --shard I/N '
    'runs one shard of them (join the parts with attnzoo merge), --ray runs them as Ray tasks, and with '
    '--output FILE (.csv or .json) each row is written as it finishes, so --resume completes an interrupted '
    'run. Each row says where it ran: host, node, device, threads.',
    'Networks: --network NET (see attnzoo list --networks) places each block in NET as its paper does '
    '(--placement, --stages) and measures the whole network at --shape B,3,H,W, beside the plain network\'s row '
    '(block none): network rows add added_params, added_macs, added_fwd_ms, added_train_ms and the blocks\' '
    'share of the MACs and forward time (attn_macs_share, attn_time_share). A block the network cannot hold is '
    'a skipped row saying why.',
    'An existing --output file is refused unless --resume (complete it) or --overwrite (replace it and its '
    '.settings.json / .campaign.json).',
    'Exit status: 0 when every row succeeded, 1 when a row failed (its status says why), 2 for a usage '
    'error, 70 for an internal error of attnzoo (--debug shows its traceback).',
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


def _shown(column, row: dict[str, Any]) -> Any:
    value = row.get(column.name)
    if column.name == "status" and isinstance(row.get("nonfinite"), (int, float)) and row["nonfinite"] > 0:
        return f"{value} · NaN/inf"  # the row ran (its time is true), but its output did not
    if column.name == "rel_err" and isinstance(value, float):
        return f"{value:.1e}"
    if column.style == "si":
        return _si(value, column.unit)
    if column.style == "ms":
        return _ms(value, row.get(column.name.replace("_ms", "_iqr_ms")))
    if isinstance(value, float) and column.style == "num":
        return round(value) if abs(value) >= 1000 else float(f"{value:.4g}")
    return value


#: The table's columns by default (--wide shows every column with a value, --columns chooses): what fits
#: 100 characters, beside the columns of the settings the rows differ in.
DEFAULT_COLUMNS = ("block", "shape", "status", "network", "params", "macs", "fwd_ms", "fwd_peak_mib", "train_ms")
#: Settings shown as a column when the rows differ in them (the caption names those they share).
VARIED = ("network", "placement", "overrides", "mode", "dtype", "device", "compile", "amp", "channels_last",
          "input_scale", "sdpa_backend", "threads", "runtime")
_VARIED_LABELS = {"overrides": "set", "channels_last": "channels last", "input_scale": "input scale",
                  "sdpa_backend": "sdpa"}
#: Shown by default when some row has them: what a mode cost in accuracy (rows other than eager float32).
NUMERIC_COLUMNS = ("rel_err", "nonfinite")
#: Shown by default when a row ran in another runtime (--runtime): the runtime, how the export went, the
#: error against eager float32 and whether the export holds at another size.
RUNTIME_COLUMNS = ("runtime", "export", "rel_err", "dynamic_hw")


def nonfinite_note(rows: list[dict[str, Any]]) -> str | None:
    """The line under a table naming the rows whose output held NaN or inf (their timings stand)."""
    found = [f"{r['block']} at {r['shape']} ({int(r['nonfinite'])})" for r in rows
             if isinstance(r.get("nonfinite"), (int, float)) and r["nonfinite"] > 0]
    if not found:
        return None
    return "attnzoo: NaN or inf in the output of " + ", ".join(found) + " (values; its timings stand)"


def _label(column) -> str:
    return column.label or _VARIED_LABELS.get(column.name, column.name)


def check_columns(text: Optional[str]) -> Optional[list[str]]:
    """``--columns a,b,c``: column names or table headings, checked before anything is measured."""
    if text is None:
        return None
    from attnzoo.errors import ConfigError
    from attnzoo.columns import ALL_COLUMNS
    from attnzoo.registry import closest

    known = {c.name: c.name for c in ALL_COLUMNS}
    known.update({c.label: c.name for c in ALL_COLUMNS if c.label})
    chosen = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item not in known:
            close = closest(item, [c.name for c in ALL_COLUMNS], n=2)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; see --format csv's header"
            raise ConfigError(f"--columns: no column '{item}'{hint}")
        chosen.append(known[item])
    if not chosen:
        raise ConfigError("--columns needs column names, e.g. --columns block,shape,fwd_ms")
    return chosen


def _table_rows(rows: list[dict[str, Any]], wide: bool = False,
                chosen: Optional[list[str]] = None) -> tuple[list[dict[str, Any]], list[str]]:
    """What the table shows: by default DEFAULT_COLUMNS and the settings the rows differ in; with ``wide``
    every labelled column (attnzoo.profiling.measurements) that has a value; with ``chosen`` those columns.
    Counts with SI prefixes, time as median ± IQR, and only columns that have a value in some row. CSV and
    JSON keep every raw column."""
    from attnzoo.columns import ALL_COLUMNS

    by_name = {c.name: c for c in ALL_COLUMNS}
    varied = [name for name in VARIED if name in by_name and len({str(row.get(name)) for row in rows}) > 1]
    if chosen is not None:
        wanted = [by_name[name] for name in chosen]
    else:
        base = [c.name for c in ALL_COLUMNS if c.label] if wide else list(DEFAULT_COLUMNS)
        if any(row.get("runtime") for row in rows):
            base += [name for name in RUNTIME_COLUMNS if name not in base]
        base += [c for c in NUMERIC_COLUMNS if c not in base and any(row.get(c) not in (None, "") for row in rows)]
        wanted = [by_name[name] for name in base + [v for v in varied if v not in base]]
    shown = [{_label(c): _shown(c, row) for c in wanted} for row in rows]
    keep = ("block", "shape", "status")
    columns = [_label(c) for c in wanted
               if chosen is not None or c.name in keep or any(r[_label(c)] not in ("", None) for r in shown)]
    return shown, columns


def _caption(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    threads = f"{first['threads']} thread" + ("s" if first["threads"] != 1 else "")
    modes = [f"runtime {first['runtime']}" if first.get("runtime") else "",
             f"compile {first['compile']}" if first.get("compile") else "",
             f"amp {first['amp']}" if first.get("amp") else "",
             "channels-last" if first.get("channels_last") in (True, "True") else ""]
    gflops = next((row["device_gflops"] for row in rows if row.get("device_gflops")), None)
    matmul = f" · compute ceiling {gflops:g} GFLOP/s" if gflops else ""
    shared = first.get("overrides") if len({row.get("overrides") for row in rows}) == 1 else None
    where = " · ".join([str(first.get("device_name") or first["device"]), first["dtype"], *filter(None, modes),
                        threads, f"torch {first['torch']}", *([f"--set {shared}"] if shared else [])])
    own = sorted({row["runtime"] for row in rows if row.get("runtime") in ("onnxruntime", "openvino")})
    memory = f"MiB: not measured in {' or '.join(own)} (its own allocator)" if own else "MiB: peak above inputs and weights"
    return (f"{where}{matmul}\n"
            f"1 MAC = 1 multiply-add = 2 FLOPs · time: median ± IQR · {memory} · "
            "of limit: the roofline's time over the measured one (1 = at the hardware's limit)")


def warn_unstable(rows: list[dict[str, Any]]) -> None:
    """The footer on stderr: when the machine was too busy for the threads, or a time's spread is wide, say
    that the results may be unstable and what to rerun with (attnzoo.profiling.load)."""
    from attnzoo.profiling.load import stability_warnings

    for line in stability_warnings(rows):
        say(f"attnzoo: {line}")


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
        None, "--min-time", metavar="SECONDS", callback=bounded(0, strict=True, what="a number of seconds"),
        help="Time each measurement for at least this long (default: 0.3)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Calls before timing starts (default: 3)."),
    threads: Optional[int] = ThreadsOption,
    compile_: bool = CompileOption,
    compile_mode: Optional[str] = CompileModeOption,
    amp: bool = AmpOption,
    channels_last: bool = ChannelsLastOption,
    input_scale: Optional[float] = InputScaleOption,
    sdpa_backend: Optional[str] = SdpaBackendOption,
    runtime: Optional[str] = RuntimeOption,
    export_dir: Optional[str] = ExportDirOption,
    recalibrate: bool = RecalibrateOption,
    by_module: bool = typer.Option(
        False, "--by-module", help="One row per submodule (params, MACs, bytes, share of the forward time)."),
    depth: int = typer.Option(1, "--depth", metavar="K", help="With --by-module: how deep to list submodules."),
    plot: Optional[str] = typer.Option(
        None, "--plot", metavar="FILE", help="Draw the roofline chart of the rows (.png or .svg)."),
    suite: Optional[str] = typer.Option(
        None, "--suite", metavar="NAME|FILE", help="Run a suite: a TOML file, or a name from profiles/ (e.g. seeds)."),
    shard: Optional[str] = ShardOption,
    ray: Optional[str] = RayOption,
    resume: bool = typer.Option(False, "--resume", help="Keep the rows already in --output; measure the rest."),
    retry_failed: bool = RetryFailedOption,
    overwrite: bool = OverwriteOption,
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
    wide: bool = WideOption,
    columns: Optional[str] = ColumnsOption,
    registry: Optional[List[str]] = RegistryOption,
    network: Optional[List[str]] = NetworkOption,
    placement: Optional[str] = PlacementOption,
    stages: Optional[str] = StagesOption,
) -> int:
    from attnzoo.campaign.shard import parse_shard
    from attnzoo.cli.common import debug_enabled
    from attnzoo.errors import ConfigError
    from attnzoo.output import output_format, render

    fmt = check_format(fmt)
    chosen = check_columns(columns)
    file_fmt = output_format(output, fmt)  # a path that cannot be written ends here, before any measurement
    if by_module or file_fmt == "table":  # a file of rows is the campaign's to keep (--resume) or replace
        check_fresh(output, overwrite)
    part = parse_shard(shard)
    dirs = registry_dirs(registry)
    given = {key: value for key, value in (("device", device), ("dtype", dtype), ("mode", mode),
                                           ("min_time", min_time), ("warmup", warmup),
                                           ("threads", threads)) if value is not None}
    given.update(mode_settings(compile_, compile_mode, amp, channels_last, input_scale, sdpa_backend))
    given.update(runtime_settings(runtime, export_dir))
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
        if network or placement or stages:
            raise ConfigError("--suite takes its networks from the suite: give no --network, --placement or --stages")
        runs = [(run.blocks, run.shapes, run.overrides) for run in loaded.runs]
        per_run = check_runs(runs, overrides, dirs)  # names, shapes and --set, before torch is imported
        plans = [(patterns, run.shapes, run_overrides, run.network_options)
                 for run, per_block in zip(loaded.runs, per_run)
                 for patterns, run_overrides in split_plans(run.blocks, per_block)]
    else:
        settings = given
        patterns = list(names or []) + (["*"] if all_blocks else [])
        if not patterns and not network:
            raise ConfigError("name at least one block (or --all, or --suite NAME); see 'attnzoo list'")
        in_network = network_options(network, placement, stages)
        per_block = check_runs([(patterns, list(shape or []), {})], overrides, dirs)[0]
        plans = [(run_patterns, list(shape or []), run_overrides, in_network)
                 for run_patterns, run_overrides in split_plans(patterns, per_block)]
    if settings.get("runtime", "eager") != "eager":
        settings.setdefault("mode", "infer")  # a runtime runs inference only
    if plot is not None and settings.get("mode") == "train":
        raise ConfigError("--plot draws the roofline of forward rows, and --mode train measures none: "
                          "use --mode infer or both")
    from attnzoo.profiling.runner import COLUMNS, ProfileOptions, failed  # imports torch: after the checks

    options = ProfileOptions(raise_errors=debug_enabled(), **settings)
    if depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {depth}")
    if by_module:
        if part is not None or ray is not None or resume:
            raise ConfigError("--by-module runs here, whole: it takes no --shard, --ray or --resume")
        if any(plan[3] for plan in plans):
            raise ConfigError("--by-module lists a block's submodules; it does not take --network")
        if plot is not None:
            raise ConfigError("--by-module lists submodules in a table: it draws no roofline (--plot); drop one")
        if options.mode == "train":
            raise ConfigError("--by-module times forwards only: it cannot honour --mode train (use --mode infer)")
        return _by_module(plans, options.checked(), depth, dirs, fmt, output, file_fmt)
    if plot is not None:
        from attnzoo.output import PLOT_SUFFIXES, check_output

        check_output(plot, "--plot", PLOT_SUFFIXES)
        if ray is not None:
            raise ConfigError("--plot draws the ceilings of this machine: it does not go with --ray")
    rows = _run_campaign(plans, options, dirs, part, ray, resume, retry_failed, output, file_fmt, overwrite,
                         recalibrate)
    bad = [row for row in rows if failed(row)]
    for row in rows:
        if row["status"] != "ok":
            where = f" in {row['network']}" if row.get("network") else ""
            say(f"attnzoo: {row['block']}{where} at {row['shape']}: {row['status']}")
    if fmt == "table" and len(bad) < len(rows):  # with --output x.csv the table still shows on the terminal
        shown, labels = _table_rows(rows, wide, chosen)
        render(shown, "table", columns=labels, title=title, caption=_caption(rows),
               output=output if file_fmt == "table" else None, fit=chosen is None, wide=wide)
    if output is None and fmt != "table":
        render(rows, fmt, columns=COLUMNS)
    if note := nonfinite_note(rows):
        say(note)
    if output:
        say(f"wrote {count(len(rows), 'row')} to {output}")
    warn_unstable(rows)
    if plot is not None:
        from attnzoo.profiling.roofline import plot_roofline
        from attnzoo.profiling.runner import calibrate

        plot_roofline(rows, calibrate(options.checked()), plot)
        say(f"roofline written to {plot}")
    return 1 if bad else 0


def _by_module(plans, options, depth: int, dirs, fmt: str, output: Optional[str], file_fmt: str = "table") -> int:
    """``--by-module``: the rows of every block's submodules (attnzoo.profiling.modules)."""
    from attnzoo.build import parse_shape
    from attnzoo.errors import BlockFailure, ConfigError
    from attnzoo.output import render
    from attnzoo.profiling.modules import MODULE_COLUMNS, module_rows
    from attnzoo.registry import get_spec, resolve_names

    jobs = [(get_spec(name, dirs), parse_shape(s), run_overrides)
            for blocks, shapes, run_overrides, _ in plans for name in resolve_names(blocks, dirs) for s in shapes]
    if not jobs:
        raise ConfigError("--by-module needs a block and a --shape")
    rows, failures = [], 0
    for spec, shape, run_overrides in jobs:
        try:
            rows += module_rows(spec, shape, options, run_overrides, depth)
        except BlockFailure as failure:
            failures += 1
            say(f"attnzoo: {spec.name} at {','.join(map(str, shape))}: error: {failure.stage} failed: "
                f"{failure.error}")
    if rows:
        threads = rows[0]["threads"]
        if output is not None and file_fmt != "table":  # the file as its suffix says; the table still shows
            render(rows, file_fmt, columns=MODULE_COLUMNS, output=output)
        if fmt == "table":
            shown = [{**r, "macs": _si(r["macs"]), "bytes_eager": _si(r["bytes_eager"], "B"),
                      "note": "not called (see below)" if r["note"] else ""} for r in rows]
            blocks = " · ".join(dict.fromkeys(f"{r['block']} {r['shape']}: {r['block_fwd_ms']:.4g} ms" for r in rows))
            columns = [c for c in MODULE_COLUMNS if c not in ("block_fwd_ms", "threads")
                       and (c != "note" or any(r["note"] for r in rows))]
            render(shown, fmt, columns=columns, title=f"attnzoo profile --by-module (depth {depth})",
                   caption=f"forward (median, {threads} thread{'s' if threads != 1 else ''}): {blocks}\n"
                           "rows add up to the block: fwd_ms = the module's median share of a forward x the "
                           "block's median forward; (own ops) are the operators outside the listed submodules",
                   output=output if file_fmt == "table" else None)
        elif output is None:
            render(rows, fmt, columns=MODULE_COLUMNS)
        for (block, shape), names in _not_called(rows).items():
            say(f"attnzoo: {block} at {shape}: {', '.join(names)} hold parameters but are not called: the code of "
                f"a module above them uses the parameters (e.g. one fused matmul), so their MACs and time are in "
                f"(own ops)")
        if output:
            say(f"wrote {count(len(rows), 'row')} to {output}")
    return 1 if failures else 0


def _not_called(rows) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["note"]:
            found.setdefault((row["block"], row["shape"]), []).append(row["module"])
    return found


def _run_campaign(plans, options, dirs, part, ray, resume, retry_failed, output, file_fmt,
                  overwrite: bool = False, recalibrate: bool = False) -> list[dict[str, Any]]:
    """The plans' units through the campaign driver, on this process or on Ray; the rows in plan order."""
    import dataclasses

    from attnzoo.campaign.driver import Campaign
    from attnzoo.campaign.executors import make_executor
    from attnzoo.campaign.progress import CampaignProgress
    from attnzoo.campaign.rows import RowFile
    from attnzoo.errors import ConfigError
    from attnzoo.profiling.runner import COLUMNS, calibrate, plan_units, refuse_if_none_can_run

    if resume and output is not None and file_fmt == "table":
        raise ConfigError(f"--resume completes a file of rows: --output {output} must be .csv or .json")
    checked = options.checked(here=ray is None)
    executor = make_executor(ray, raise_errors=options.raise_errors)  # a Ray that cannot be reached ends here
    if checked.device == "auto":  # under Ray: the cluster's devices decide
        checked = dataclasses.replace(checked, device=executor.default_device())
    units = [unit for blocks, shapes, run_overrides, in_networks in plans
             for unit in plan_units(blocks, shapes, checked, run_overrides, dirs, **in_networks)]
    units = list({unit.id: unit for unit in units}.values())  # a network's plain row once, when plans are per block
    refuse_if_none_can_run(units)  # a block that cannot take the shape is answered before any measurement
    row_file = RowFile(output, file_fmt, COLUMNS) if output is not None and file_fmt != "table" else None
    campaign = Campaign("profile", units, shard=part, row_file=row_file, resume=resume, retry_failed=retry_failed,
                        keep_file=True, overwrite=overwrite, with_plan=ray is not None)
    campaign.open()
    if campaign.cleared:
        say(f"--overwrite: replacing {', '.join(campaign.cleared)}")
    if part is not None:
        say(f"shard {part}: {len(campaign.selected)} of {len(campaign.units)} units")
    if resume:
        say(f"resuming: {len(campaign.done)} units already in {output}")
    if recalibrate and not executor.remote:
        calibrate(checked, fresh=True)  # the rows then read the new ceilings (kept in the cache)
    with CampaignProgress(len(campaign.selected), every=30 if executor.remote else None) as progress:
        rows = campaign.run(executor, progress=progress)
    from attnzoo.rowdata import add_network_deltas

    if add_network_deltas(rows) and row_file is not None:  # the plain network's row may have come after
        row_file.rows = rows
        row_file.start(keep_existing=True)
    return rows
