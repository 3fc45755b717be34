"""Every measurement of a row has one shape: a name, its columns (declared in :mod:`attnzoo.columns`), whether
the row's mode asks for it, and how it runs on a :class:`~attnzoo.profiling.prepare.Prepared` block. The
runner runs them in order. Importing this module does not import torch; measurements import what they need
when they run.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import attnzoo.columns as columns
from attnzoo.columns import Column


@dataclass(frozen=True)
class Calibration:
    """The device's ceilings for the roofline (attnzoo.profiling.runner.calibrate)."""

    matmul: Any  # attnzoo.profiling.efficiency.MatmulPeak: FLOP/s of the dtype the arithmetic runs in
    conv: Any  # attnzoo.profiling.efficiency.ConvPeak: counted FLOP/s of a 3x3 convolution
    bandwidth: Any  # attnzoo.profiling.bandwidth.BandwidthCurve: GB/s against working-set bytes
    measured_at: str = ""  # when the oldest of them was measured (UTC, ISO 8601; kept in the machine's cache)
    remeasured: bool = False  # measured again in this run (a row beat the cached ones)

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

    with prepared.mode_context():
        count = count_macs(prepared.eager, prepared.inputs)
    prepared.macs_by_module = count.by_module  # for a network's attention share
    return {"macs": count.macs, "flops": count.flops, "uncounted_ops": "; ".join(count.uncounted),
            "counter": count.counter}


def _bytes(prepared, calibration, row) -> dict[str, Any]:
    from attnzoo.profiling.traffic import count_traffic

    traffic = count_traffic(prepared.eager, prepared.inputs, prepared.mode_context())
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
    if not prepared.memory_tracked:  # a runtime that allocates on its own (ONNX Runtime, OpenVINO): not eager's
        return {"fwd_peak_mib": None}
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
            "device_gflops": round(calibration.flops_per_s / 1e9, 1), "ceilings_at": calibration.measured_at or None}


def _roofline(prepared, calibration, row) -> dict[str, Any]:
    return roofline(row.get("flops"), row.get("bytes_min"), row.get("fwd_ms"), calibration)


def is_reference(options) -> bool:
    """An eager float32 row with torch's own SDPA choice: the reference every other mode is judged against (a
    row in another runtime is judged against it too)."""
    return (options.dtype == "float32" and not options.amp and not options.compile and not options.channels_last
            and getattr(options, "sdpa_backend", "auto") == "auto" and getattr(options, "runtime", "eager") == "eager")


def output_error(output: Any, reference: Any) -> dict[str, Any]:
    """``output`` against ``reference`` (tensors or nested outputs, leaf by leaf): the largest absolute
    difference over the finite values, that over the reference's largest magnitude, and how many values of
    ``output`` are NaN or inf."""
    import torch
    from torch.utils._pytree import tree_leaves

    mine = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    theirs = [t for t in tree_leaves(reference) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not mine or len(mine) != len(theirs):
        return {}
    worst, scale, nonfinite = 0.0, 0.0, 0
    for got, want in zip(mine, theirs):
        got, want = got.detach().float(), want.detach().float()
        finite = torch.isfinite(got)
        nonfinite += int((~finite).sum())
        if finite.any():
            worst = max(worst, float((got - want).abs()[finite].max()))
        scale = max(scale, float(want.abs().max()) if want.numel() else 0.0)
    all_bad = nonfinite == sum(t.numel() for t in mine)
    return {"max_abs_err": None if all_bad else worst,
            "rel_err": None if all_bad or scale == 0 else worst / scale, "nonfinite": nonfinite}


def _numerics(prepared, calibration, row) -> dict[str, Any]:
    """The SDPA kernel that ran, and, for a row in any mode but eager float32, the error of its output (and,
    when the row trains, of its input's gradient) against eager float32 on the same inputs and weights."""
    import torch

    options = prepared.options
    # the kernel prepare's eager forward picked; another runtime runs its own attention, not torch's kernels
    eager = getattr(options, "runtime", "eager") == "eager"
    found: dict[str, Any] = {"sdpa_kernel": prepared.sdpa_kernel if eager else None}
    if is_reference(options) or prepared.reference is None:
        return found
    with torch.inference_mode():
        output = prepared.forward()
    module, inputs = prepared.reference()
    with torch.inference_mode():
        found.update(output_error(output, module(*inputs)))
    if options.mode in ("train", "both"):
        grads = [_input_grad(prepared.module, prepared.inputs, prepared.mode_context),
                 _input_grad(module, inputs, contextlib.nullcontext)]
        if grads[0] is not None and grads[1] is not None:
            error = output_error(*grads)
            found.update({f"grad_{k}": v for k, v in error.items()})
    return found


def _input_grad(module, inputs, context):
    """The gradient with respect to the first floating input of the outputs against a fixed random
    cotangent (as a downstream loss would send back; a plain sum is constant through a LayerNorm, and its
    gradient only rounding noise), in eval mode (no dropout, BatchNorm's running statistics); None when no
    output depends on the input."""
    import torch
    from torch.utils._pytree import tree_leaves

    index = next((i for i, t in enumerate(inputs) if t.is_floating_point()), None)
    if index is None:
        return None
    x = inputs[index].detach().clone().requires_grad_(True)
    args = list(inputs)
    args[index] = x
    with context():
        outputs = [t for t in tree_leaves(module(*args)) if isinstance(t, torch.Tensor) and t.requires_grad]
    if not outputs:
        return None
    generator = torch.Generator().manual_seed(0)
    cotangents = [torch.randn(t.shape, generator=generator).to(device=t.device, dtype=t.dtype) for t in outputs]
    (grad,) = torch.autograd.grad(outputs, [x], cotangents, allow_unused=True)
    return grad


def _attention_macs(prepared, calibration, row) -> dict[str, Any]:
    """The placed blocks' share of the network's MACs, from the counter's per-module counts."""
    if not prepared.attention or not row.get("macs") or not prepared.macs_by_module:
        return {}
    placed = sum(prepared.macs_by_module.get(name, 0) for name in prepared.attention)
    return {"attn_macs_share": round(placed / row["macs"], 4)}


def _attention_time(prepared, calibration, row) -> dict[str, Any]:
    """The placed blocks' share of an eager forward's time: forward hooks (synchronised on CUDA) time the
    blocks over three whole forwards (the by-module machinery). The share is a ratio inside the same
    forwards, and the forward timing before it has warmed the network up: three calls keep a whole
    network's row short."""
    import time

    import torch

    from attnzoo.profiling.modules import _Scopes

    if not prepared.attention or prepared.module is not prepared.eager and prepared.deploy_fields:
        return {}  # hooks time eager PyTorch's modules: a runtime's graph has none
    scopes = _Scopes(prepared.eager, prepared.attention, prepared.device)
    calls, spent = 0, 0.0
    try:
        with torch.inference_mode(), prepared.mode_context():
            scopes.timing = True
            while calls < 3:
                scopes._sync()
                start = time.perf_counter()
                prepared.eager(*prepared.inputs)
                scopes._sync()
                spent += time.perf_counter() - start
                calls += 1
    finally:
        scopes.close()
    return {"attn_time_share": round(sum(scopes.seconds.values()) / spent, 4) if spent else None}


def _compile_time(prepared, calibration, row) -> dict[str, Any]:
    return {"compile_s": prepared.compile_s, "compile_cache": prepared.compile_cache or None}


def _deployment(prepared, calibration, row) -> dict[str, Any]:
    """A runtime row's export columns (attnzoo.profiling.runtimes, filled when the block was prepared)."""
    return dict(prepared.deploy_fields)


MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement("parameters", columns.PARAMETERS, "any", _parameters),
    Measurement("counting MACs", columns.MACS, "any", _macs),
    Measurement("counting bytes", columns.BYTES, "any", _bytes),
    Measurement("compiling", columns.COMPILING, "any", _compile_time),
    Measurement("forward timing", columns.FORWARD, "infer", lambda p, c, r: _timing(p, c, r, train=False)),
    Measurement("forward memory", columns.FORWARD_MEMORY, "infer", lambda p, c, r: _memory(p, c, r, train=False)),
    Measurement("roofline", columns.ROOFLINE, "infer", _roofline),
    Measurement("training step", columns.TRAINING, "train", lambda p, c, r: _timing(p, c, r, train=True)),
    Measurement("training-step memory", columns.TRAINING_MEMORY, "train", lambda p, c, r: _memory(p, c, r, train=True)),
    Measurement("numerical error", columns.NUMERICS, "any", _numerics),
    Measurement("deployment", columns.DEPLOY, "any", _deployment),
    # Network rows only (their columns are in columns.NETWORK_DELTAS): the placed blocks' share of the cost.
    Measurement("attention share of MACs", (), "any", _attention_macs),
    Measurement("attention share of time", (), "infer", _attention_time),
)

# The column declarations, re-exported for the runner and older callers (they live in attnzoo.columns).
ALL_COLUMNS, BY_NAME, COLUMNS, METRICS = columns.ALL_COLUMNS, columns.BY_NAME, columns.COLUMNS, columns.METRICS


__all__ = ["ALL_COLUMNS", "BY_NAME", "COLUMNS", "Calibration", "METRICS", "MEASUREMENTS", "Measurement", "roofline"]
