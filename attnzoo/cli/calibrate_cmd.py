"""``attnzoo calibrate``: the device's ceilings for the roofline, measured and kept in the machine's cache,
shown, or forgotten."""

from __future__ import annotations

from typing import Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import (AmpOption, DeviceOption, DtypeOption, FormatOption, OutputOption, ThreadsOption,
                                check_format, say)

COLUMNS = ("ceiling", "device", "device_name", "dtype", "threads", "rate", "unit", "at", "measured_at", "seconds",
           "torch")


def _rows(records) -> list[dict]:
    """One row per cached ceiling: its rate (GFLOP/s, or GB/s of main memory for the bandwidth curve)."""
    from attnzoo.profiling.ceilings import from_json

    rows = []
    for record in records:
        key = record["key"]
        kind = key.get("ceiling")
        try:
            ceiling = from_json(kind, record["value"])
        except (KeyError, TypeError):  # a record this attnzoo cannot read: not shown
            continue
        if kind == "bandwidth":
            rate, unit = ceiling.dram_gbs, "GB/s"
            at = f"{max(ceiling.copy_sets[-1], ceiling.read_sets[-1]) / 2 ** 20:g} MiB working set"
        else:
            rate, unit = ceiling.gflops, "GFLOP/s"
            at = f"{ceiling.size}^3 product" if kind == "matmul" else "3x3 conv at " + ",".join(map(str, ceiling.shape))
        device = key.get("device", {})
        rows.append({"ceiling": kind, "device": device.get("kind"), "device_name": device.get("name"),
                     "dtype": key.get("dtype") or "", "threads": key.get("threads"), "rate": round(rate, 1),
                     "unit": unit, "at": at, "measured_at": record.get("measured_at"),
                     "seconds": record.get("seconds"), "torch": key.get("torch")})
    return rows


@app.command("calibrate")
def calibrate_command(
    device: Optional[str] = DeviceOption,
    dtype: Optional[str] = DtypeOption,
    threads: Optional[int] = ThreadsOption,
    amp: bool = AmpOption,
    show: bool = typer.Option(False, "--show", help="List the ceilings in the cache without measuring anything."),
    clear: bool = typer.Option(False, "--clear", help="Forget every ceiling in the cache."),
    again: bool = typer.Option(False, "--again", help="Measure afresh even when the cache holds them."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE",
                                       help="Draw the bandwidth curve against working set (.png, .svg or .pdf)."),
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
) -> None:
    """Measure the device's ceilings for the roofline (matmul, 3x3 convolution, memory bandwidth) and keep
    them in the machine's cache, where every later profile reads them; --show lists the cache, --clear
    forgets it."""
    from attnzoo.errors import ConfigError
    from attnzoo.output import PLOT_SUFFIXES, check_output, output_format, render
    from attnzoo.profiling import ceilings

    fmt = output_format(output, check_format(fmt))
    folder = ceilings.cache_dir()
    if clear or show:
        if plot is not None or again or any(v is not None for v in (device, dtype, threads)) or amp:
            raise ConfigError(f"--{'clear' if clear else 'show'} reads the cache only: it takes no --device, --dtype, "
                              "--threads, --amp, --again or --plot")
        if clear and show:
            raise ConfigError("--clear and --show: give one")
        if clear:
            say(f"forgot {ceilings.clear()} ceilings kept in {folder}")
            return
        rows = _rows(ceilings.entries())
        if not rows:
            say(f"no ceilings kept in {folder} yet: 'attnzoo calibrate' (or any profile) measures them")
        render(rows, fmt, columns=COLUMNS, title=f"ceilings kept in {folder}", output=output)
        return
    if plot is not None:
        check_output(plot, "--plot", PLOT_SUFFIXES)

    from attnzoo.profiling.runner import ProfileOptions, calibrate

    options = ProfileOptions(mode="infer", amp=amp, **{k: v for k, v in (("device", device), ("dtype", dtype),
                                                                         ("threads", threads)) if v is not None})
    calibration = calibrate(options.checked(), fresh=again)
    wanted = {(c.device, c.dtype, c.threads) for c in (calibration.matmul, calibration.conv)}
    kept = ceilings.entries()
    records = [r for r in kept if r["key"].get("ceiling") in ("matmul", "conv")
               and (r["value"].get("device"), r["value"].get("dtype"), r["value"].get("threads")) in wanted]
    curve_threads = calibration.bandwidth.threads
    records += [r for r in kept if r["key"].get("ceiling") == "bandwidth"
                and r["value"].get("device") == calibration.bandwidth.device
                and r["value"].get("threads") in (curve_threads, 1)]
    render(_rows(records), fmt, columns=COLUMNS, output=output,
           title=f"the device's ceilings (kept in {folder})",
           caption=f"roofline compute ceiling: {calibration.flops_per_s / 1e9:.1f} GFLOP/s (the faster of matmul "
                   f"and 3x3 conv); bandwidth {calibration.bandwidth.dram_gbs:.1f} GB/s at main memory")
    if plot is not None:
        from attnzoo.profiling.roofline import plot_bandwidth

        plot_bandwidth(calibration.bandwidth, plot)
        say(f"bandwidth curve written to {plot}")
