"""Bytes moved, the bandwidth curve, the roofline, the measurement modes (compile, autocast, channels-last),
the per-module breakdown and how profiler failures surface."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.cli import INTERNAL_ERROR, run
from attnzoo import api
from attnzoo.profiling import measurements
from attnzoo.profiling.bandwidth import BandwidthCurve, measure_bandwidth
from attnzoo.profiling.efficiency import ConvPeak, MatmulPeak
from attnzoo.profiling.measurements import COLUMNS, MEASUREMENTS, METRICS, Calibration, roofline
from attnzoo.profiling.prepare import prepare
from attnzoo.profiling.runner import ProfileOptions, profile_one
from attnzoo.profiling.traffic import count_traffic

FAST = ["--device", "cpu", "--min-time", "0.01", "--warmup", "1", "--threads", "1"]


class AddMul(nn.Module):
    def forward(self, x):
        y = x.reshape(-1).view(x.shape).transpose(-1, -2)  # views: no bytes
        return y * 2 + 1  # mul reads x, writes t; add reads t, writes out


def test_eager_bytes_count_each_operator_and_views_are_free():
    x = torch.randn(4, 8, 16)
    traffic = count_traffic(AddMul(), (x,))
    n = x.numel() * 4
    assert traffic.bytes_eager == 4 * n
    assert traffic.by_op == {"mul": 2 * n, "add": 2 * n}
    assert traffic.bytes_min == 2 * n  # input read once, output written once, no parameters


def test_minimum_bytes_of_a_linear_layer():
    layer = nn.Linear(32, 16)
    x = torch.randn(5, 32)
    traffic = count_traffic(layer, (x,))
    assert traffic.bytes_min == 4 * (5 * 32 + 5 * 16 + 32 * 16 + 16)
    # addmm reads x, the weight (a transposed view: free) and the bias, and writes the output.
    assert traffic.bytes_eager == traffic.bytes_min


def _curve(points):
    sets = tuple(float(w) for w, _ in points)
    gbs = tuple(float(g) for _, g in points)
    return BandwidthCurve(device="cpu", threads=1, copy_sets=sets, copy_gbs=gbs, read_sets=sets[:1], read_gbs=(1.0,))


def test_bandwidth_curve_interpolates_on_log_log_and_clamps():
    curve = _curve([(1e6, 100.0), (1e8, 10.0)])
    assert curve.at(1e6) == pytest.approx(100.0)
    assert curve.at(1e7) == pytest.approx(math.sqrt(100.0 * 10.0))  # midway in log size: geometric mean
    assert curve.at(1e3) == pytest.approx(100.0) and curve.at(1e12) == pytest.approx(10.0)
    assert curve.dram_gbs == pytest.approx(10.0)


def test_bandwidth_takes_the_faster_of_copy_and_read():
    curve = BandwidthCurve(device="cpu", threads=1, copy_sets=(1e6, 1e8), copy_gbs=(50.0, 20.0),
                           read_sets=(1e6, 1e8), read_gbs=(80.0, 10.0))
    assert curve.at(1e6) == pytest.approx(80.0) and curve.at(1e8) == pytest.approx(20.0)


def test_measured_bandwidth_is_plausible():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a busy machine: no waiting for a descheduled second thread
    try:
        curve = measure_bandwidth("cpu", sizes=(1 << 20, 16 << 20))
    finally:
        torch.set_num_threads(threads)
    assert curve.copy_sets == (2.0 * (1 << 20), 2.0 * (16 << 20))
    # Any machine of the last twenty years moves 1 MiB faster than 0.5 GB/s and slower than 10 TB/s.
    assert all(0.5 < g < 10_000 for g in curve.copy_gbs + curve.read_gbs)


def _calibration(gflops: float, gbs: float, conv_gflops: float | None = None) -> Calibration:
    # A 1000^3 matmul in 2e9 / (gflops * 1e9) seconds; a 3x3 conv of 1 x 10 x 10 x 10 (180,000 FLOPs).
    peak = MatmulPeak(device="cpu", dtype="float32", threads=1, size=1000, seconds=2e9 / (gflops * 1e9))
    conv = ConvPeak(device="cpu", dtype="float32", threads=1, shape=(1, 10, 10, 10),
                    seconds=1.8e5 / ((conv_gflops or gflops / 2) * 1e9))
    return Calibration(matmul=peak, conv=conv, bandwidth=_curve([(1.0, gbs), (1e12, gbs)]))


def test_roofline_memory_bound():
    # 1 GFLOP over 1 GB at 100 GFLOP/s and 10 GB/s: compute 10 ms, memory 100 ms.
    cols = roofline(flops=10 ** 9, bytes_min=10 ** 9, fwd_ms=200.0, calibration=_calibration(100.0, 10.0))
    assert cols["bound"] == "memory" and cols["roofline_ms"] == pytest.approx(100.0)
    assert cols["of_limit"] == pytest.approx(0.5) and cols["intensity"] == pytest.approx(1.0)
    assert cols["efficiency"] == pytest.approx(10 ** 9 / 0.2 / 100e9)


def test_roofline_compute_bound():
    cols = roofline(flops=10 ** 12, bytes_min=10 ** 6, fwd_ms=20_000.0, calibration=_calibration(100.0, 10.0))
    assert cols["bound"] == "compute" and cols["roofline_ms"] == pytest.approx(10_000.0)
    assert cols["of_limit"] == pytest.approx(0.5) and cols["device_gflops"] == pytest.approx(100.0)


def test_compute_ceiling_is_the_faster_of_matmul_and_convolution():
    # oneDNN runs some 3x3 convolutions at more counted FLOP/s than a matmul: that rate is the ceiling then.
    calibration = _calibration(100.0, 10.0, conv_gflops=250.0)
    assert calibration.flops_per_s == pytest.approx(250e9)
    cols = roofline(flops=10 ** 12, bytes_min=10 ** 6, fwd_ms=20_000.0, calibration=calibration)
    assert cols["roofline_ms"] == pytest.approx(4_000.0) and cols["device_gflops"] == pytest.approx(250.0)


def test_columns_have_one_source():
    names = [c.name for m in MEASUREMENTS for c in m.columns]
    assert len(names) == len(set(names)) and set(names) <= set(COLUMNS)
    assert {"bytes_min", "bytes_eager", "intensity", "roofline_ms", "bound", "of_limit", "fwd_img_s",
            "train_img_s", "compile_s", "compile", "amp", "channels_last", "device_name", "timestamp"} <= set(COLUMNS)
    assert {"macs", "fwd_ms", "fwd_peak_mib", "bytes_min"} <= set(METRICS) and "status" not in METRICS


def _row(name, shape, **options):
    spec = attnzoo.get_spec(name)
    settings = dict(device="cpu", min_time=0.05, warmup=1, threads=1, mode="infer") | options
    return profile_one(spec, shape, ProfileOptions(**settings).checked())


def test_rows_carry_bytes_and_a_roofline():
    row = _row("se", (2, 16, 8, 8))
    x = 2 * 16 * 8 * 8 * 4
    params = 4 * (16 * 1 + 1 + 1 * 16 + 16)
    assert row["status"] == "ok" and row["bytes_min"] == 2 * x + params
    assert row["bytes_eager"] > row["bytes_min"]
    assert row["bound"] == "memory" and 0 < row["of_limit"] <= 1.1
    assert row["fwd_img_s"] == pytest.approx(2 / (row["fwd_ms"] / 1e3), rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("spec", attnzoo.list_blocks(), ids=lambda s: s.name)
def test_no_block_beats_the_roofline(spec):
    """A measured time cannot beat the hardware's limit: of_limit above 1.1 means a wrong byte count,
    bandwidth or compute ceiling. At 8,64,32,32, the benchmark's shape, where blocks come close to it."""
    row = _row(spec.name, (8, 64, 32, 32))
    if row["status"].startswith("error") and "cannot take shape" in row["status"]:
        pytest.skip(row["status"])
    assert row["status"] == "ok", row["status"]
    assert row["of_limit"] <= 1.1, (f"{spec.name}: {row['fwd_ms']} ms measured, the roofline allows "
                                    f"{row['roofline_ms']} ms ({row['bound']} bound)")


def test_channels_last_prepares_block_and_inputs():
    options = ProfileOptions(device="cpu", mode="infer", channels_last=True).checked()
    prepared = prepare(attnzoo.get_spec("cbam"), (2, 16, 8, 8), options)
    assert prepared.inputs[0].is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in prepared.eager.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    row = _row("cbam", (2, 16, 8, 8), channels_last=True)
    assert row["status"] == "ok" and row["channels_last"] is True


def test_amp_autocasts_to_bfloat16_on_cpu():
    options = ProfileOptions(device="cpu", mode="infer", amp=True).checked()
    prepared = prepare(attnzoo.get_spec("vit-attention"), (2, 16, 4, 4), options)
    with torch.inference_mode():
        out = prepared.forward()
    assert out.dtype == torch.bfloat16
    assert next(prepared.eager.parameters()).dtype == torch.float32  # the weights stay in dtype
    row = _row("vit-attention", (2, 16, 4, 4), amp=True, mode="both")
    assert row["status"] == "ok" and row["amp"] == "bfloat16" and row["train_ms"] > 0


@pytest.mark.slow
def test_compile_mode_records_its_time_and_modes():
    row = _row("se", (2, 16, 8, 8), compile=True, mode="both")
    assert row["status"] == "ok", row["status"]
    assert row["compile"] == "default" and row["compile_s"] > 0
    assert row["fwd_ms"] > 0 and row["train_ms"] > 0
    assert row["compile_cache"] in ("warm", "cold")
    again = _row("se", (2, 16, 8, 8), compile=True, mode="both")
    assert again["compile_cache"] == "warm"  # the same graphs again: Inductor's on-disk cache has them
    eager = _row("se", (2, 16, 8, 8))
    assert eager["compile"] == "" and eager["compile_s"] is None and eager["compile_cache"] is None


def test_a_block_that_fails_to_compile_records_why(monkeypatch):
    def broken(module, **kwargs):
        class Broken(nn.Module):
            def forward(self, *args):
                raise RuntimeError("backend exploded")
        return Broken()

    monkeypatch.setattr(torch, "compile", broken)
    row = _row("se", (2, 16, 8, 8), compile=True)
    assert row["status"] == "error: compile failed: RuntimeError: backend exploded"


@pytest.mark.parametrize("args, message", [
    (["--amp", "--dtype", "float16"], "cannot autocast --dtype float16"),
    (["--compile-mode", "fastest", "--compile"], "compile mode 'fastest' is not one of"),
    (["--compile-mode", "max-autotune"], "--compile-mode needs --compile"),
    (["--by-module", "--depth", "0"], "--depth must be at least 1"),
    (["--plot", "roofline.bmpx"], "unknown format ('.bmpx')"),
    (["--plot", "missing/dir/roofline.png"], "folder 'missing/dir' does not exist"),
])
def test_bad_mode_options_end_in_one_line(capsys, args, message):
    code = run(["profile", "se", "--shape", "2,16,4,4", *FAST, *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_compile_without_a_compiler_ends_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    code = run(["profile", "se", "--shape", "2,16,4,4", "--compile", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "needs a C++ compiler" in err and len(err.strip().splitlines()) == 1


def test_a_profiler_bug_is_an_internal_error_not_a_row_status(capsys, monkeypatch):
    def broken(prepared, calibration, row):
        raise KeyError("oops")

    bad = measurements.Measurement("counting bytes", MEASUREMENTS[2].columns, "any", broken)
    monkeypatch.setattr("attnzoo.profiling.runner.MEASUREMENTS", MEASUREMENTS[:2] + (bad,) + MEASUREMENTS[3:])
    code = run(["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", *FAST])
    err = capsys.readouterr().err
    assert code == INTERNAL_ERROR == 70
    assert "internal error" in err and "counting bytes failed for se" in err and "Traceback" not in err
    monkeypatch.setenv("ATTNZOO_DEBUG", "1")
    with pytest.raises(Exception, match="counting bytes failed"):
        run(["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", *FAST])


def test_calibration_runs_once_when_the_first_row_needs_it(monkeypatch, tmp_path):
    """The ceilings are measured once per process, when the first block that built needs them (a block that
    cannot be built measures nothing); every later unit reads them."""
    from attnzoo.profiling import bandwidth, efficiency, runner

    events = []
    for module, name in ((efficiency, "measure_matmul_peak"), (efficiency, "measure_conv_peak"),
                         (bandwidth, "measure_bandwidth")):
        real = getattr(module, name)
        counted = lambda *a, _real=real, _name=name, **k: events.append(_name) or _real(*a, **k)  # noqa: E731
        monkeypatch.setattr(module, name, counted)
    monkeypatch.setenv("ATTNZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(runner, "_CALIBRATIONS", {})
    rows = list(api.profile_rows(["mha", "cbam"], ["2,12,4,4", "2,16,4,4"],
                                 ProfileOptions(device="cpu", mode="infer", min_time=0.01, threads=1),
                                 on_start=lambda block, shape: events.append(f"row {block} {shape}")))
    assert [r["status"] == "ok" for r in rows] == [False, True, False, True]  # 12 channels: not 8 heads, not 1/16
    assert events == ["row mha 2,12,4,4", "row mha 2,16,4,4", "measure_matmul_peak", "measure_conv_peak",
                      "measure_bandwidth", "row cbam 2,12,4,4", "row cbam 2,16,4,4"]


def test_by_module_rows_add_up_to_the_block():
    from attnzoo.profiling.modules import OWN, module_rows

    options = ProfileOptions(device="cpu", mode="infer", min_time=0.05, threads=1).checked()
    b, c, h, w = 2, 32, 8, 8
    rows = module_rows(attnzoo.get_spec("vit-attention"), (b, c, h, w), options, depth=1)
    by_name = {r["module"]: r for r in rows}
    n = h * w
    # timm-style Attention: qkv Linear(C, 3C), proj Linear(C, C); Q K^T and P V are the block's own ops.
    assert by_name["qkv"]["macs"] == b * n * c * 3 * c
    assert by_name["proj"]["macs"] == b * n * c * c
    assert by_name[OWN]["macs"] == 2 * b * n * n * c
    total = attnzoo.profile("vit-attention", (b, c, h, w), mode="infer", min_time=0.01, threads=1)
    assert sum(r["macs"] for r in rows) == total["macs"][0]
    assert sum(r["params"] for r in rows) == total["params"][0]
    assert sum(r["time_share"] for r in rows) == pytest.approx(1.0, abs=0.02)


def test_by_module_on_the_command_line(capsys):
    code = run(["profile", "cbam", "--shape", "2,32,8,8", "--by-module", "--depth", "2", "-f", "json", *FAST])
    out, err = capsys.readouterr()
    import json

    rows = json.loads(out)
    assert code == 0, err
    modules = [r["module"] for r in rows]
    assert "(own ops)" in modules and any(m.count(".") == 1 for m in modules)


def test_roofline_plot_is_written(tmp_path):
    out = tmp_path / "roofline.png"
    code = run(["profile", "se", "mha", "--shape", "2,16,8,8", "--mode", "infer", "--plot", str(out), *FAST])
    assert code == 0 and out.stat().st_size > 10_000
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_each_compiled_row_compiles_its_own_block(monkeypatch):
    """Token blocks share the adapter's forward; past Dynamo's recompile limit a later block would silently
    run eagerly under --compile. With the limit at 1, a second token block must still compile a graph."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    # Recent torch calls the limit recompile_limit (cache_size_limit stays as an alias), torch 2.3 only
    # cache_size_limit; the config module refuses a name it does not know, so set whichever this torch has.
    limits = [key for key in ("recompile_limit", "cache_size_limit") if hasattr(torch._dynamo.config, key)]
    assert limits, "this torch's Dynamo has neither recompile_limit nor cache_size_limit"
    for key in limits:
        monkeypatch.setattr(torch._dynamo.config, key, 1)
    options = ProfileOptions(device="cpu", mode="infer", compile=True).checked()
    for name in ("sdpa", "xca"):
        counters.clear()
        prepared = prepare(attnzoo.get_spec(name), (2, 16, 4, 4), options)
        assert counters["stats"]["unique_graphs"] >= 1, f"{name} ran eagerly under --compile"
        assert prepared.compile_s > 0


def test_bandwidth_curves_that_stop_at_different_sizes_combine_over_the_common_ones():
    """A curve stops at the first size that does not fit in the free memory, which other processes change
    between the 1-thread and the N-thread measurement: the faster curve is taken over the sizes both have."""
    from attnzoo.profiling.bandwidth import BandwidthCurve

    one = BandwidthCurve("cpu", 1, (2.0, 4.0, 8.0), (5.0, 5.0, 5.0), (1.0, 2.0, 4.0), (1.0, 1.0, 1.0))
    many = BandwidthCurve("cpu", 2, (2.0, 4.0), (6.0, 4.0), (1.0, 2.0), (0.5, 2.0))
    both = one.faster(many)
    assert (both.copy_sets, both.copy_gbs, both.read_sets, both.read_gbs, both.threads) == \
        ((2.0, 4.0), (6.0, 5.0), (1.0, 2.0), (1.0, 2.0), 2)
    with pytest.raises(ValueError, match="different sizes"):
        one.faster(BandwidthCurve("cpu", 2, (3.0,), (1.0,), (1.0,), (1.0,)))


def test_by_module_runs_on_the_runs_threads_and_its_rows_add_up_to_the_block(monkeypatch, capsys, tmp_path):
    """Issue 31, item 2: --by-module ran on torch's threads whatever --threads said, and its rows summed to
    the hooked forwards' mean rather than the block's time. At --threads 1 every forward runs on one thread,
    the rows add up to the block's forward (its median, timed as profile times it), a submodule whose
    parameters its parent's code uses is noted, and options it cannot honour are refused before measuring."""
    import json

    import torch

    import attnzoo.profiling.prepare as prepare_module
    from attnzoo.profiling.modules import NOT_CALLED, OWN, module_rows

    seen: list[int] = []
    real_prepare = prepare_module.prepare

    def watched(*args, **kwargs):
        prepared = real_prepare(*args, **kwargs)
        prepared.eager.register_forward_pre_hook(lambda module, inputs: seen.append(torch.get_num_threads()))
        return prepared

    monkeypatch.setattr(prepare_module, "prepare", watched)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's threads differ from the run's
    try:
        options = ProfileOptions(device="cpu", mode="infer", min_time=0.02, warmup=1, threads=1).checked()
        rows = module_rows(attnzoo.get_spec("mha"), (2, 32, 8, 8), options, depth=1)
        assert torch.get_num_threads() == 2  # put back afterwards
    finally:
        torch.set_num_threads(saved)
    assert seen and set(seen) == {1}
    block_ms = rows[0]["block_fwd_ms"]
    assert block_ms > 0 and {r["block_fwd_ms"] for r in rows} == {block_ms} and {r["threads"] for r in rows} == {1}
    assert sum(r["fwd_ms"] for r in rows) == pytest.approx(block_ms, abs=1e-3 * len(rows))
    assert sum(r["time_share"] for r in rows) == pytest.approx(1.0, abs=1e-3)
    by_name = {r["module"]: r for r in rows}
    # mha fuses w_qs, w_ks, w_vs into one matmul in its own forward: their MACs are the block's own.
    assert {m for m, r in by_name.items() if r["note"] == NOT_CALLED} == {"w_qs", "w_ks", "w_vs"}
    assert by_name["w_qs"]["macs"] == 0 and by_name[OWN]["macs"] >= 3 * 2 * 64 * 32 * 32

    out = tmp_path / "modules.json"
    assert run(["profile", "mha", "--shape", "2,32,8,8", "--by-module", "-o", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert f"wrote {len(json.loads(out.read_text()))} rows to {out}" in err
    assert "w_qs, w_ks, w_vs hold parameters but are not called" in err
    for extra, message in ((["--plot", str(tmp_path / "r.png")], "--plot"), (["--mode", "train"], "--mode train")):
        assert run(["profile", "mha", "--shape", "2,32,8,8", "--by-module", *extra, *FAST]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r.png").exists()
