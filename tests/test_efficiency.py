"""The efficiency column: achieved FLOP/s over the device's matmul FLOP/s (kept on disk: test_ceilings.py)."""

from __future__ import annotations

import torch

from attnzoo.profiling import efficiency
from attnzoo.api import profile_rows
from attnzoo.profiling.runner import COLUMNS, ProfileOptions


def test_the_matmul_peak_is_a_sane_rate_of_the_dtype_and_threads():
    first = efficiency.measure_matmul_peak("cpu", torch.float32)
    assert first.dtype == "float32" and first.device == "cpu" and first.threads == torch.get_num_threads()
    assert 0.1 < first.gflops < 1e6  # any CPU or GPU this century
    assert first.flops_per_s == 2 * first.size ** 3 / first.seconds


def test_efficiency_is_none_without_a_time_or_flops():
    peak = efficiency.MatmulPeak(device="cpu", dtype="float32", threads=1, size=100, seconds=0.001)
    assert efficiency.efficiency(None, 0.1, peak) is None
    assert efficiency.efficiency(10, None, peak) is None
    assert efficiency.efficiency(2e9, 1.0, peak) == 1.0  # 2 GFLOP/s over 2e6 / 1e-3 = 2 GFLOP/s


def test_profile_rows_carry_a_sane_efficiency_for_a_matmul_heavy_block():
    options = ProfileOptions(device="cpu", mode="infer", min_time=0.05, warmup=1)
    row, = profile_rows(["vit-attention"], ["4,64,16,16"], options)
    assert {"efficiency", "device_gflops"} <= set(COLUMNS) and tuple(row) == COLUMNS
    assert row["status"] == "ok"
    assert row["device_gflops"] > 0
    # a busy machine can make it small; it cannot make a forward of mostly matmuls beat a matmul by 3x
    assert 0 < row["efficiency"] < 3
    expected = row["flops"] / (row["fwd_ms"] / 1e3) / (row["device_gflops"] * 1e9)
    assert abs(row["efficiency"] - expected) <= 0.01 * expected + 1e-4  # rounding of the columns


def test_efficiency_is_none_when_the_forward_is_not_timed():
    options = ProfileOptions(device="cpu", mode="train", min_time=0.01, warmup=1)
    row, = profile_rows(["se"], ["2,16,4,4"], options)
    assert row["status"] == "ok" and row["fwd_ms"] is None
    assert row["efficiency"] is None and row["device_gflops"] is None
