"""How far a block is from the hardware: achieved FLOP/s over the device's measured matmul FLOP/s.

The reference is measured, not taken from a data sheet: square matrix products of the dtype on the device,
with the current number of CPU threads, at a few sizes (256 to 2048 on the CPU, up to 8192 on CUDA), each
repeated for at least 0.1 s; the fastest single product over all sizes sets the rate (a best-of over many
calls stays honest on a busy machine, where a typical call is slowed by other work). It is measured once
per machine and (device, dtype, threads) and kept on disk (:func:`attnzoo.profiling.runner.calibrate`).
Each ceiling takes a bounded time on any device and dtype (:data:`BUDGET_S`): sizes grow only while one
product stays fast, so a dtype the hardware emulates (float16 on most CPUs) ends early, with the best rate
it found. A dense matmul is the fastest thing most devices do, so ``efficiency`` is a fraction of 1
for nearly every block: 0.6 means the forward runs at 60% of the rate of a large matmul; a block far below
that is bound by memory traffic or by small, poorly shaped operations, not by arithmetic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

#: Matrix sizes tried on the CPU; CUDA adds larger ones (a GPU needs them to fill its units).
SIZES = (256, 512, 1024, 2048)
CUDA_SIZES = SIZES + (4096, 8192)
#: Each size is repeated for at least this long and this many calls; the fastest call counts.
MIN_SECONDS = 0.1
REPEATS = 3
#: At most this long for one ceiling (warm-ups included): no larger size is started past it.
BUDGET_S = 1.5
#: A size whose one call takes longer than this is the last: the rate is found, larger sizes only cost time.
SLOW_CALL_S = 0.05

@dataclass(frozen=True)
class MatmulPeak:
    device: str
    dtype: str
    threads: int
    size: int  # n of the n x n x n product
    seconds: float  # best time of one product

    @property
    def flops_per_s(self) -> float:
        return 2 * self.size ** 3 / self.seconds

    @property
    def gflops(self) -> float:
        return self.flops_per_s / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_call(fn, sync, min_seconds: float, repeats: int, deadline: float) -> float:
    """The fastest of repeated calls of ``fn`` after one warm-up (kernel selection, first touch), stopping
    at ``deadline`` (time.perf_counter) however few calls ran: the warm-up itself counts when it is all
    there was time for."""
    start = time.perf_counter()
    fn()
    sync()
    best = time.perf_counter() - start
    warm, calls, spent = True, 0, 0.0
    while (calls < repeats or spent < min_seconds) and time.perf_counter() + (best if warm else 0) < deadline:
        start = time.perf_counter()
        fn()
        sync()
        elapsed = time.perf_counter() - start
        best = elapsed if warm else min(best, elapsed)
        warm, calls, spent = False, calls + 1, spent + elapsed
    return best


def measure_matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        min_seconds: float = MIN_SECONDS, repeats: int = REPEATS,
                        budget_s: float = BUDGET_S) -> MatmulPeak:
    """Measure (without the cache) the best FLOP/s of a square ``dtype`` matmul on ``device``, in about
    ``budget_s`` at most."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    deadline = time.perf_counter() + budget_s
    best: tuple[float, int, float] | None = None  # (FLOP/s, size, seconds)
    with torch.inference_mode():
        for size in CUDA_SIZES if device.type == "cuda" else SIZES:
            if best is not None and time.perf_counter() >= deadline:
                break
            a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            seconds = best_call(lambda: torch.mm(a, b), lambda: _sync(device), min_seconds, repeats, deadline)
            a = b = None
            rate = 2 * size ** 3 / seconds
            if best is None or rate > best[0]:
                best = (rate, size, seconds)
            if seconds > SLOW_CALL_S:
                break
    return MatmulPeak(device=str(device), dtype=str(dtype).removeprefix("torch."),
                      threads=torch.get_num_threads(), size=best[1], seconds=best[2])


#: 3x3 convolutions C -> C (padding 1) timed for the convolution ceiling: oneDNN and cuDNN run some of them
#: at more counted FLOP/s than a matmul (Winograd-like algorithms), so a conv block can beat the matmul rate.
CONV_SHAPES = ((8, 64, 32, 32), (8, 128, 16, 16), (8, 256, 16, 16))


@dataclass(frozen=True)
class ConvPeak:
    device: str
    dtype: str
    threads: int
    shape: tuple[int, int, int, int]  # (B, C, H, W) of the 3x3, C -> C convolution
    seconds: float

    @property
    def flops_per_s(self) -> float:
        b, c, h, w = self.shape
        return 2 * b * c * c * 9 * h * w / self.seconds

    @property
    def gflops(self) -> float:
        return self.flops_per_s / 1e9


def measure_conv_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                      min_seconds: float = MIN_SECONDS, repeats: int = REPEATS,
                      budget_s: float = BUDGET_S) -> ConvPeak:
    """Measure (without the cache) the best counted FLOP/s of a 3x3 convolution on ``device``, in about
    ``budget_s`` at most."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    deadline = time.perf_counter() + budget_s
    best: ConvPeak | None = None
    with torch.inference_mode():
        for shape in CONV_SHAPES:
            if best is not None and time.perf_counter() >= deadline:
                break
            conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1, bias=False).to(device=device, dtype=dtype)
            x = torch.randn(shape).to(device=device, dtype=dtype)
            fastest = best_call(lambda: conv(x), sync, min_seconds, repeats, deadline)
            peak = ConvPeak(device=str(device), dtype=str(dtype).removeprefix("torch."),
                            threads=torch.get_num_threads(), shape=shape, seconds=fastest)
            if best is None or peak.flops_per_s > best.flops_per_s:
                best = peak
            if fastest > SLOW_CALL_S:
                break
    return best


def efficiency(flops: int | None, seconds: float | None, peak: MatmulPeak) -> float | None:
    """Achieved FLOP/s (``flops`` in ``seconds``) over ``peak``; None when either is unknown."""
    if not flops or not seconds or seconds <= 0 or math.isnan(seconds):
        return None
    return flops / seconds / peak.flops_per_s


__all__ = ["ConvPeak", "MatmulPeak", "best_call", "efficiency", "measure_conv_peak", "measure_matmul_peak"]
