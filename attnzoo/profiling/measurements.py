"""Every measurement of a row has one shape: a name, its columns (with units), whether the row's mode asks
for it, and how it runs on a :class:`~attnzoo.profiling.prepare.Prepared` block. The runner runs them in
order; the table, CSV, JSON, the sweep's fits and the plots read the columns from here.

This module defines columns without importing torch (``compare`` and ``report`` read them); measurements
import what they need when they run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from attnzoo.profiling.columns import ENVIRONMENT, IDENTITY, NETWORK, NETWORK_DELTAS, Column


@dataclass(frozen=True)
class Calibration:
    """The device's two ceilings for the roofline, measured once before the rows."""

    matmul: Any  # attnzoo.profiling.efficiency.MatmulPeak: FLOP/s of the dtype the arithmetic runs in
    conv: Any  # attnzoo.profiling.efficiency.ConvPeak: counted FLOP/s of a 3x3 convolution
    bandwidth: Any  # attnzoo.profiling.bandwidth.BandwidthCurve: GB/s against working-set bytes

    @property
    def flops_per_s(self) -> float:
        """The compute ceiling: the faster of a dense matmul and a 3x3 convolution, in counted FLOP/s."""
        return max(self.matmul.flops_per_s, self.conv.flops_per_s)


@dataclass(frozen=True)
class Measurement:
    name: str  # says where a row failed
    columns: tuple[Column, ...]
    phase: str  # "any", "infer" (forward measurements) or "train"
    run: Callable[[Any, Calibration | None, Mapping[str, Any]], dict[str, Any]]

    def wanted(self, mode: str) -> bool:
        return self.phase == "any" or self.phase == mode or mode == "both"


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def _parameters(prepared, calibration, row) -> dict[str, Any]:
    params = list(prepared.eager.parameters())
    return {"params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in params if p.requires_grad)}


def _macs(prepared, calibration, row) -> dict[str, Any]:
    from attnzoo.profiling.flops import count_macs

    with prepared.autocast():
        count = count_macs(prepared.eager, prepared.inputs)
    prepared.macs_by_module = count.by_module  # for a network's attention share
    return {"macs": count.macs, "flops": count.flops, "uncounted_ops": "; ".join(count.uncounted),
            "counter": count.counter}


def _bytes(prepared, calibration, row) -> dict[str, Any]:
    from attnzoo.profiling.traffic import count_traffic

    traffic = count_traffic(prepared.eager, prepared.inputs, prepared.autocast())
    return {"bytes_min": traffic.bytes_min, "bytes_eager": traffic.bytes_eager}


def _timing(prepared, calibration, row, train: bool) -> dict[str, Any]:
    import torch

    from attnzoo.profiling.timing import time_callable

    options = prepared.options
    if train:
        prepared.module.train()
        timing = time_callable(prepared.train_step, options.device, options.min_time, options.warmup)
        prepared.clear_grads()
        prepared.module.eval()
        prefix = "train"
    else:
        with torch.inference_mode():
            timing = time_callable(prepared.forward, options.device, options.min_time, options.warmup)
        prefix = "fwd"
    median = _round(timing.median_ms)
    return {f"{prefix}_ms": median, f"{prefix}_iqr_ms": _round(timing.iqr_ms), f"{prefix}_runs": timing.runs,
            f"{prefix}_img_s": None if not median else round(prepared.batch / (median / 1e3), 1)}


def _memory(prepared, calibration, row, train: bool) -> dict[str, Any]:
    import torch

    from attnzoo.profiling.memory import MIB, peak_bytes

    if train:
        prepared.module.train()
        prepared.clear_grads()  # gradients left by the last step would otherwise count in the baseline
        peak = peak_bytes(prepared.train_step, prepared.device)
        prepared.clear_grads()
        prepared.module.eval()
        return {"train_peak_mib": round(peak / MIB, 4)}
    with torch.inference_mode():
        peak = peak_bytes(prepared.forward, prepared.device)
    return {"fwd_peak_mib": round(peak / MIB, 4)}


def roofline(flops: int | None, bytes_min: int | None, fwd_ms: float | None, calibration: Calibration) -> dict:
    """The roofline columns of a forward: arithmetic intensity (FLOPs per compulsory byte), the time the
    device's ceilings allow (the slower of compute at the compute ceiling and traffic at the bandwidth of the
    row's working set), which ceiling binds, and that time over the measured one (1.0 = at the limit)."""
    if not bytes_min or fwd_ms is None or fwd_ms <= 0:
        return {}
    flops = flops or 0
    bandwidth_gbs = calibration.bandwidth.at(bytes_min)
    compute_s = flops / calibration.flops_per_s
    memory_s = bytes_min / (bandwidth_gbs * 1e9)
    limit_ms = max(compute_s, memory_s) * 1e3
    return {"intensity": round(flops / bytes_min, 3), "bandwidth_gbs": round(bandwidth_gbs, 1),
            "roofline_ms": round(limit_ms, 6), "bound": "compute" if compute_s >= memory_s else "memory",
            "of_limit": round(limit_ms / fwd_ms, 4),
            "efficiency": round(flops / (fwd_ms / 1e3) / calibration.flops_per_s, 4),
            "device_gflops": round(calibration.flops_per_s / 1e9, 1)}


def _roofline(prepared, calibration, row) -> dict[str, Any]:
    return roofline(row.get("flops"), row.get("bytes_min"), row.get("fwd_ms"), calibration)


def _network():
    from attnzoo.profiling import networks

    return networks


def _compile_time(prepared, calibration, row) -> dict[str, Any]:
    return {"compile_s": prepared.compile_s, "compile_cache": prepared.compile_cache or None}


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("parameters", (
        Column("params", label="params", describe="parameters"),
        Column("trainable_params", describe="parameters that require gradients"),
    ), "any", _parameters),
    Measurement("counting MACs", (
        Column("macs", label="MACs", style="si", metric=True, describe="MACs: multiply-adds of one forward"),
        Column("flops", style="si", describe="FLOPs: 2 x MACs"),
        Column("uncounted_ops", label="uncounted ops", style="text", lower_is_better=None,
               describe="operators with no MAC formula"),
        Column("counter", style="text", lower_is_better=None, describe="which counter counted the MACs"),
    ), "any", _macs),
    Measurement("counting bytes", (
        Column("bytes_min", unit="B", label="bytes min", style="si", metric=True,
               describe="compulsory bytes: inputs, outputs and parameters once each"),
        Column("bytes_eager", unit="B", style="si", metric=True,
               describe="bytes moved by the operators of an eager forward"),
    ), "any", _bytes),
    Measurement("compiling", (
        Column("compile_s", unit="s", label="compile s", describe="compile time: the first calls under --compile"),
        Column("compile_cache", style="text", lower_is_better=None,
               describe="warm: Inductor's on-disk cache held the compiled code already; cold: it was written"),
    ), "any", _compile_time),
    Measurement("forward timing", (
        Column("fwd_ms", unit="ms", label="fwd ms", style="ms", metric=True, describe="forward latency: median"),
        Column("fwd_iqr_ms", unit="ms", describe="forward latency: interquartile range"),
        Column("fwd_runs", lower_is_better=None, describe="timed forward calls"),
        Column("fwd_img_s", unit="img/s", lower_is_better=False,
               describe="forward throughput: images per second"),
    ), "infer", lambda p, c, r: _timing(p, c, r, train=False)),
    Measurement("forward memory", (
        Column("fwd_peak_mib", unit="MiB", label="fwd MiB", metric=True,
               describe="forward peak memory: above inputs and weights"),
    ), "infer", lambda p, c, r: _memory(p, c, r, train=False)),
    Measurement("roofline", (
        Column("intensity", unit="FLOP/B", label="FLOP/B", lower_is_better=None,
               describe="arithmetic intensity: FLOPs per compulsory byte"),
        Column("bandwidth_gbs", unit="GB/s", lower_is_better=None,
               describe="the device's bandwidth at the row's working set"),
        Column("roofline_ms", unit="ms", describe="the fastest forward the device's ceilings allow"),
        Column("bound", label="bound", style="text", lower_is_better=None, describe="compute or memory"),
        Column("of_limit", label="of limit", lower_is_better=False,
               describe="roofline_ms / fwd_ms: 1.0 is at the hardware's limit"),
        Column("efficiency", lower_is_better=False, describe="achieved FLOP/s over the compute ceiling"),
        Column("device_gflops", unit="GFLOP/s", lower_is_better=None,
               describe="the compute ceiling: the faster of a matmul and a 3x3 convolution"),
    ), "infer", _roofline),
    Measurement("training step", (
        Column("train_ms", unit="ms", label="train ms", style="ms", metric=True,
               describe="training step latency: median"),
        Column("train_iqr_ms", unit="ms", describe="training step latency: interquartile range"),
        Column("train_runs", lower_is_better=None, describe="timed training steps"),
        Column("train_img_s", unit="img/s", lower_is_better=False,
               describe="training throughput: images per second"),
    ), "train", lambda p, c, r: _timing(p, c, r, train=True)),
    Measurement("training-step memory", (
        Column("train_peak_mib", unit="MiB", label="train MiB", metric=True,
               describe="training step peak memory: above inputs and weights"),
    ), "train", lambda p, c, r: _memory(p, c, r, train=True)),
    # Network rows only (their columns are NETWORK_DELTAS): the placed blocks' share of the network's cost.
    Measurement("attention share of MACs", (), "any", lambda p, c, r: _network().attention_macs(p, c, r)),
    Measurement("attention share of time", (), "infer", lambda p, c, r: _network().attention_time(p, c, r)),
)

#: Every column of a row, in order: identity, measurements, environment.
ALL_COLUMNS: tuple[Column, ...] = (IDENTITY + NETWORK + tuple(c for m in MEASUREMENTS for c in m.columns)
                                   + NETWORK_DELTAS + ENVIRONMENT)
COLUMNS: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in ALL_COLUMNS}
#: Costs that grow with the input: what sweeps fit and plot.
METRICS: tuple[str, ...] = tuple(c.name for c in ALL_COLUMNS if c.metric)


__all__ = ["ALL_COLUMNS", "BY_NAME", "COLUMNS", "Calibration", "METRICS", "MEASUREMENTS", "Measurement", "roofline"]
