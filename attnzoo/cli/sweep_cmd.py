"""``attnzoo sweep``: profile over a grid of input sizes and fit how each cost grows (cost ~ x^k).

Each point is measured by the same ``profile_one`` as ``attnzoo profile``. With ``--output`` every row is
written as it finishes, so an interrupted sweep keeps what it measured and ``--resume`` completes it
without measuring a point twice.
"""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import (AmpOption, ChannelsLastOption, CompileModeOption, CompileOption, DeviceOption,
                                DtypeOption, FormatOption, NetworkOption, OutputOption, PlacementOption, RayOption,
                                ColumnsOption, ExportDirOption, InputScaleOption, OverwriteOption, RecalibrateOption,
                                RegistryOption, RetryFailedOption, RuntimeOption, SdpaBackendOption, SetOption,
                                ShardOption, StagesOption, ThreadsOption, WideOption, bounded, check_format, check_runs,
                                count, mode_settings, network_options, registry_dirs, runtime_settings, say, split_plans)

HELP = "\n\n".join([
    "Sweep input sizes and fit how cost grows: MACs, latency and peak memory against N = H*W "
    "(or the channels, or the batch), with the exponent k of cost ~ x^k fitted on log-log.",
    "Example: attnzoo sweep mha external-attention --shape 1,64,8,8 --hw 32,48,64,96 --plot growth.png",
    "The base --shape fixes B and C; --hw (or --values with --over) gives the grid: a list 8,16,32 or a "
    "range start:stop:step. Measurements are those of 'attnzoo profile' (see its --help for what MACs, "
    "fwd_ms and fwd_peak_mib mean; 1 MAC = 2 FLOPs).",
    "--output FILE (.csv or .json) receives each row as it finishes, and FILE.settings.json the settings "
    "they are measured with; after an interruption, rerun the same command with --resume (refused if the "
    "settings differ; --retry-failed measures failed points again). A point whose estimated peak memory exceeds --max-memory is skipped with that "
    "reason; the estimate extrapolates the block's previous points on log-log.",
    "Campaigns: every point is a unit with a stable id; --shard I/N measures one shard of them (join the "
    "parts with attnzoo merge, then fit with attnzoo report), --ray runs them as Ray tasks.",
    "--baseline NAME (one of the swept blocks) adds, for every other block and for MACs, forward time and "
    "forward peak memory, the crossover: the N from which the block costs less than the baseline, "
    "interpolated on log-log between grid points; 'always' or 'never' when it is cheaper at every or at no "
    "grid point ('equal' for the same cost at every point); 'below N' when it is cheaper only below N (it "
    "crosses back); 'cheaper on A-B, C-D' for several crossings. They are shown in a table, added to the "
    "rows (columns crossover_macs, ...) and marked on --plot, whose curves are then coloured by family.",
])


def parse_memory(text: str | None) -> float | None:
    """``"8GiB"``, ``"512MiB"``, ``"8G"`` or a number of MiB to MiB; None for no limit. NaN and infinities
    are refused (``none`` says "no limit")."""
    import math

    from attnzoo.errors import ConfigError

    if text is None or text.strip().lower() == "none":
        return None
    units = {"tib": 1024 ** 2, "t": 1024 ** 2, "gib": 1024, "gb": 1024, "g": 1024, "mib": 1, "mb": 1, "m": 1}
    value = text.strip().lower()
    for unit, factor in units.items():
        if value.endswith(unit):
            value, scale = value[: -len(unit)], factor
            break
    else:
        scale = 1
    try:
        mib = float(value) * scale
    except ValueError:
        raise ConfigError(f"--max-memory '{text}' is not a size like 8GiB or 512MiB") from None
    if not math.isfinite(mib):
        raise ConfigError(f"--max-memory '{text}' is not a finite size; give one like 8GiB, or 'none' for no limit")
    if mib <= 0:
        raise ConfigError(f"--max-memory must be positive (or 'none' for no limit), got '{text}'")
    return mib


def default_max_memory(device: str) -> float:
    """Three quarters of the device's memory in MiB: physical RAM on the CPU, the GPU's on CUDA."""
    import os

    if device.startswith("cuda"):
        import torch

        return 0.75 * torch.cuda.get_device_properties(torch.device(device)).total_memory / 2 ** 20
    return 0.75 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20


@app.command("sweep", help=HELP)
def sweep_command(
    names: Optional[List[str]] = typer.Argument(None, help="Block names or wildcards; see 'attnzoo list'."),
    shape: Optional[str] = typer.Option(None, "--shape", "-s", metavar="B,C,H,W",
                                        help="Base shape: B and C stay fixed (B,N,C for token blocks)."),
    hw: Optional[str] = typer.Option(None, "--hw", metavar="LIST|RANGE",
                                     help="Values of H = W: 8,16,32 or 8:64:8 (same as --over hw --values)."),
    over: Optional[str] = typer.Option(None, "--over", help="Axis to vary: hw (H = W), channels or batch (default: hw)."),
    values: Optional[str] = typer.Option(None, "--values", metavar="LIST|RANGE", help="Values along --over."),
    suite: Optional[str] = typer.Option(None, "--suite", metavar="NAME|FILE",
                                        help="A sweep suite from profiles/ (e.g. self-vs-external) or a file."),
    overrides: Optional[List[str]] = SetOption,
    device: Optional[str] = DeviceOption,
    dtype: Optional[str] = DtypeOption,
    mode: Optional[str] = typer.Option(None, "--mode", help="infer, train or both (default: infer)."),
    min_time: Optional[float] = typer.Option(None, "--min-time", metavar="SECONDS",
                                             callback=bounded(0, strict=True, what="a number of seconds"),
                                             help="Time each point for at least this long (default: 0.2)."),
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
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", metavar="SIZE",
        help="Skip points whose estimated peak exceeds this (e.g. 8GiB; 'none': no limit) "
             "(default: 3/4 of the device's memory)."),
    resume: bool = typer.Option(False, "--resume", help="Keep the rows already in --output; measure the rest."),
    retry_failed: bool = RetryFailedOption,
    overwrite: bool = OverwriteOption,
    shard: Optional[str] = ShardOption,
    ray: Optional[str] = RayOption,
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE", help="Write log-log curves (.png or .svg)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="NAME",
                                           help="Report where each block becomes cheaper than this one."),
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
    wide: bool = WideOption,
    columns: Optional[str] = ColumnsOption,
    registry: Optional[List[str]] = RegistryOption,
    network: Optional[List[str]] = NetworkOption,
    placement: Optional[str] = PlacementOption,
    stages: Optional[str] = StagesOption,
) -> int:
    import dataclasses

    from attnzoo.build import format_shape, parse_shape
    from attnzoo.campaign.driver import Campaign
    from attnzoo.campaign.executors import make_executor
    from attnzoo.campaign.rows import RowFile
    from attnzoo.campaign.shard import parse_shard
    from attnzoo.campaign.units import Unit
    from attnzoo.cli.common import debug_enabled
    from attnzoo.errors import ConfigError
    from attnzoo.registry import get_spec, resolve_names
    from attnzoo.output import PLOT_SUFFIXES, check_output, output_format
    from attnzoo.growth import grid_shapes, parse_values

    fmt = check_format(fmt)
    from attnzoo.cli.profile_cmd import check_columns

    chosen = check_columns(columns)
    # Paths that cannot be written end here, before any measurement.
    if output is not None and output_format(output, fmt) == "table":
        raise ConfigError(f"--output {output}: a sweep writes its rows as .csv or .json")
    if plot is not None:
        check_output(plot, "--plot", PLOT_SUFFIXES)
    part = parse_shard(shard)
    dirs = registry_dirs(registry)
    given = {k: v for k, v in (("device", device), ("dtype", dtype), ("mode", mode), ("min_time", min_time),
                               ("threads", threads)) if v is not None}
    given.update(mode_settings(compile_, compile_mode, amp, channels_last, input_scale, sdpa_backend))
    given.update(runtime_settings(runtime, export_dir))
    settings: dict[str, Any] = {"mode": "infer", "min_time": 0.2}

    # The plan: (block name, shape, overrides) for every point, checked before anything runs.
    plan: list[tuple[str, tuple[int, ...], dict[str, Any]]] = []
    if suite is not None:
        from attnzoo.profiling.suites import check_blocks, load_suite

        if names or shape or hw or values or over or network:
            raise ConfigError("--suite gives the blocks and the grid: give no names, --shape, --hw, --over, --values "
                              "or --network")
        loaded = load_suite(suite)
        if loaded.sweep_over is None:
            raise ConfigError(f"{loaded.path}: not a sweep suite (it has no [sweep] table); use 'attnzoo profile --suite'")
        check_blocks(loaded, dirs)
        over = loaded.sweep_over
        settings.update(loaded.options)
        per_run = check_runs([(run.blocks, run.shapes, run.overrides) for run in loaded.runs], overrides, dirs)
        for run, per_block in zip(loaded.runs, per_run):
            plan += [(name, parse_shape(s), extra) for name, extra in per_block.items() for s in run.shapes]
    else:
        in_network = network_options(network, placement, stages)
        if in_network:
            shape = _network_base(in_network, shape, over, dirs)
        if not names and not in_network:
            raise ConfigError("name at least one block (or --suite NAME); see 'attnzoo list'")
        if shape is None:
            raise ConfigError("give the base shape with --shape B,C,H,W")
        if hw is not None and values is not None:
            raise ConfigError("give the grid once: --hw or --values")
        if hw is not None and over not in (None, "hw"):
            raise ConfigError(f"--hw varies H = W, but --over is '{over}': give --over {over} --values instead")
        over = over or "hw"
        if hw is not None:
            grid_text = hw
        elif values is not None:
            grid_text = values
        else:
            raise ConfigError("give the grid with --hw 8,16,32 (or --over channels --values 32,64,128)")
        grid = grid_shapes(parse_shape(shape), over, parse_values(grid_text))
        per_block = check_runs([(names or [], grid, {})], overrides, dirs)[0]  # before torch is imported
        plan = [(name, point, extra) for name, extra in per_block.items() for point in grid]
    settings.update(given)
    # imports torch: after the checks
    from attnzoo.profiling.runner import COLUMNS, ProfileOptions, refuse_if_none_can_run, unit_settings

    options = ProfileOptions(raise_errors=debug_enabled(), **settings).checked(here=ray is None)
    executor = make_executor(ray, raise_errors=options.raise_errors)  # a Ray that cannot be reached ends here
    if options.device == "auto":  # under Ray: the cluster's devices decide
        options = dataclasses.replace(options, device=executor.default_device())
    specs = {name: get_spec(name, dirs) for name, _, _ in plan}
    if network and suite is None:
        specs["none"] = _PLAIN  # the plain network's rows: fitted, plotted and a possible --baseline
    limit = (parse_memory(max_memory) if max_memory is not None
             else default_max_memory(options.device) if ray is None else None)
    if baseline is not None and baseline not in specs:
        get_spec(baseline, dirs)  # an unknown name gets the registry's "did you mean"
        raise ConfigError(f"--baseline {baseline} is not one of the swept blocks ({', '.join(specs)})")
    if baseline is not None and part is not None:
        raise ConfigError("--baseline needs every block's rows: with --shard, merge the parts first "
                          "(attnzoo merge) and compare there")

    # What the rows are measured with: a resume with anything else would mix rows measured differently.
    record = {**unit_settings(options), "over": over,
              "overrides": {f"{name} {format_shape(point)}": extra for name, point, extra in plan if extra}}
    units = [Unit.make("profile", name, point, unit_settings(options), extra, registry=dirs)
             for name, point, extra in plan]
    if network and suite is None:
        from attnzoo.profiling.networks import plan_network_units

        units = [unit for patterns, extra in split_plans(names or [], per_block)
                 for unit in plan_network_units(patterns, resolve_names(patterns, dirs), grid, network, placement,
                                                stages, unit_settings(options), extra, dirs)]
        units = list({unit.id: unit for unit in units}.values())  # the plain network's points once
    refuse_if_none_can_run(units)  # no block can take the grid's shapes: said before any measurement
    row_file = RowFile(output, output_format(output, fmt), COLUMNS) if output else None
    campaign = Campaign("sweep", units, shard=part, row_file=row_file, resume=resume, retry_failed=retry_failed,
                        keep_file=True, overwrite=overwrite, with_plan=ray is not None)
    if row_file is not None and resume:
        row_file.load()
        record = row_file.check_settings(record)
    campaign.open(check_rows=False)  # the settings record guards a resume, and a resume may extend the grid
    if campaign.cleared:
        say(f"--overwrite: replacing {', '.join(campaign.cleared)}")
    if row_file is not None:
        row_file.save_settings(record)
        if resume:
            say(f"resuming: {len(campaign.done)} points already in {output}")
    if part is not None:
        say(f"shard {part}: {len(campaign.selected)} of {len(campaign.units)} points")

    rows = _measure(campaign, executor, options, over, limit, recalibrate)
    if network:
        from attnzoo.rowdata import add_network_deltas

        add_network_deltas(rows)
    results = _crossovers(rows, baseline, over, row_file) if baseline is not None else None
    return _report(rows, specs, over, fmt, output, plot, results, wide, chosen)


class _PLAIN:
    """What the sweep's tables and plots read of a card, for the plain network's rows (block none)."""

    name, family, complexity, macs_exponent = "none", "network", "the plain network", None


def _network_base(in_network: dict, shape: Optional[str], over: Optional[str], dirs) -> str:
    """The base shape of a sweep of networks: --shape, or the (first) network's input; only H = W or the
    batch can vary (a network takes 3 channels)."""
    from attnzoo.errors import ConfigError
    from attnzoo.networks.cards import resolve_networks

    if over not in (None, "hw", "batch"):
        raise ConfigError(f"a network takes B,3,H,W images: sweep --over hw or batch, not {over}")
    cards = resolve_networks(in_network["networks"], dirs)
    if len(cards) != 1:
        raise ConfigError(f"a sweep fits one network at a time; --network names {len(cards)}")
    return shape or cards[0].input


def _crossovers(rows, baseline, over, row_file) -> list[dict[str, Any]]:
    """The crossovers against ``baseline``, also written into the rows (and the --output file)."""
    from attnzoo.profiling.runner import COLUMNS
    from attnzoo.growth import add_crossover_columns, crossover_columns, crossovers

    results = crossovers(rows, baseline, over)
    add_crossover_columns(rows, results, baseline, over)
    if row_file is not None:
        row_file.columns = [*COLUMNS, *crossover_columns()]
        row_file.start(keep_existing=True)  # rewrite the file with the new columns
    return results


def _crossover_table(results, specs) -> tuple[list[dict[str, Any]], list[str], str]:
    """One row per block (and base shape): its family and one crossover cell per metric."""
    from attnzoo.growth import CROSSOVER_METRICS, crossover_label

    table: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        row = table.setdefault((result["block"], result["base"]), {
            "block": result["block"], "family": specs[result["block"]].family, "base": result["base"],
            f"{result['variable']}_compared": result["compared"]})
        row[result["metric"]] = crossover_label(result)
        if result["compared"] and len(result["compared"]) > len(row[f"{result['variable']}_compared"]):
            row[f"{result['variable']}_compared"] = result["compared"]
    variable = results[0]["variable"] if results else "N"
    several = len({base for _, base in table}) > 1
    columns = ["block", "family", *(["base"] if several else []), *CROSSOVER_METRICS, f"{variable}_compared"]
    title = (f"crossover {variable} against {results[0]['baseline'] if results else 'the baseline'}: "
             f"cheaper from this {variable} on")
    return list(table.values()), columns, title


def _estimate_mib(previous: list[dict[str, Any]], shape: tuple[int, ...], over: str) -> float | None:
    """The block's peak at ``shape``, extrapolated from its previous points (the larger of fwd and train)."""
    from attnzoo.growth import axis_value, extrapolate, shape_of

    estimates = []
    for metric in ("fwd_peak_mib", "train_peak_mib"):
        pts = sorted((axis_value(shape_of(r), over), r.get(metric)) for r in previous
                     if r.get("status") == "ok" and r.get(metric))
        if len(pts) >= 2:
            estimates.append(extrapolate([p[0] for p in pts], [float(p[1]) for p in pts], axis_value(shape, over)))
    estimates = [e for e in estimates if e is not None]
    return max(estimates) if estimates else None


def _measure(campaign, executor, options, over, limit, recalibrate: bool = False) -> list[dict[str, Any]]:
    """The campaign's points, each skipped (with the reason as its status) when the block's earlier points
    put its estimated peak above ``limit``."""
    from attnzoo.campaign.progress import CampaignProgress
    from attnzoo.profiling.runner import blank_row, calibrate

    if recalibrate and not executor.remote:
        calibrate(options, fresh=True)  # the points then read the new ceilings (kept in the cache)
    by_block: dict[str, list[dict[str, Any]]] = {}
    for unit in campaign.selected:
        if unit.id in campaign.done:
            by_block.setdefault(unit.block, []).append(campaign.done[unit.id])

    def before(unit):
        estimate = _estimate_mib(by_block.get(unit.block, []), unit.shape, over)
        if limit is None or estimate is None or estimate <= limit:
            return None
        row = blank_row(unit.block, unit.shape_text, options, unit.overrides_dict)
        row["status"] = f"skipped: estimated peak {estimate:,.0f} MiB exceeds --max-memory {limit:,.0f} MiB"
        return row

    def on_row(row):
        by_block.setdefault(row["block"], []).append(row)
        if row["status"] != "ok":
            say(f"attnzoo: {row['block']} at {row['shape']}: {row['status']}")

    with CampaignProgress(len(campaign.selected), verb="sweep", every=30 if executor.remote else None) as progress:
        return campaign.run(executor, before=before, progress=progress, on_row=on_row)


def _report(rows, specs, over, fmt, output, plot, results=None, wide=False, chosen=None) -> int:
    from attnzoo.cli.profile_cmd import _caption, _table_rows, nonfinite_note, warn_unstable
    from attnzoo.output import render, to_table
    from attnzoo.profiling.runner import COLUMNS
    from attnzoo.growth import crossover_columns, fit_rows
    from attnzoo.columns import METRICS
    from attnzoo.sweep import plot as plot_rows

    stated = {name: (spec.complexity, spec.macs_exponent) for name, spec in specs.items()}
    fits = fit_rows(rows, over, [m for m in METRICS if any(r.get(m) for r in rows)], stated)
    fit_columns = ["block", "metric", "exponent", "r2", "points", f"{fits[0]['variable']}_range" if fits else "N_range",
                   "card_macs_exponent", "complexity"]
    title = f"cost ~ {fits[0]['variable'] if fits else 'N'}^k (log-log fit)"
    cross = _crossover_table(results, specs) if results is not None else None
    row_columns = [*COLUMNS, *(crossover_columns() if results is not None else [])]
    if fmt == "table":
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:
            shown, labels = _table_rows(rows, wide, chosen)
            render(shown, "table", columns=labels, title="attnzoo sweep", caption=_caption(ok), fit=chosen is None,
                   wide=wide)
        render(fits, "table", columns=fit_columns, title=title)
        if cross:
            render(cross[0], "table", columns=cross[1], title=cross[2])
    elif not output:
        render(rows, fmt, columns=row_columns)
        from rich.console import Console

        Console(stderr=True).print(to_table(fits, fit_columns, title=title))
        if cross:
            Console(stderr=True).print(to_table(cross[0], cross[1], title=cross[2]))
    else:
        render(fits, "table", columns=fit_columns, title=title)
        if cross:
            render(cross[0], "table", columns=cross[1], title=cross[2])
    if note := nonfinite_note(rows):  # where along the sweep a block's sums or exponentials overflow
        say(note)
    if output:
        say(f"{count(len(rows), 'row')} in {output}")
    warn_unstable(rows)
    if plot:
        plot_rows(rows, over, plot, **({"families": {name: spec.family for name, spec in specs.items()},
                                         "crossover_results": results} if results is not None else {}))
        say(f"plot written to {plot}")
    # Points skipped under --max-memory are the outcome asked for; an error or out-of-memory is a failure.
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows) else 1
