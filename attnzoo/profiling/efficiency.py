"""How far a block is from the hardware: achieved FLOP/s over the device's measured matmul FLOP/s.

The reference is measured, not taken from a data sheet: square matrix products of the dtype on the device,
with the current number of CPU threads, at a few sizes (256 to 2048 on the CPU, up to 8192 on CUDA), each
repeated for at least 0.1 s; the fastest single product over all sizes sets the rate (a best-of over many
calls stays honest on a busy machine, where a typical call is slowed by other work). It is measured once
per process and cached per (device, dtype, threads). A dense matmul is the fastest thing most devices do, so ``efficiency`` is a fraction of 1
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

_cache: dict[tuple[str, str, int], "MatmulPeak"] = {}


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


def _best_matmul(a: torch.Tensor, b: torch.Tensor, min_seconds: float, repeats: int) -> float:
    """The fastest of repeated products of ``a`` and ``b``, after one warm-up (kernel selection)."""
    device = a.device
    torch.mm(a, b)
    _sync(device)
    best, calls, spent = math.inf, 0, 0.0
    while calls < repeats or spent < min_seconds:
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        elapsed = time.perf_counter() - start
        best, calls, spent = min(best, elapsed), calls + 1, spent + elapsed
    return best


def measure_matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        min_seconds: float = MIN_SECONDS, repeats: int = REPEATS) -> MatmulPeak:
    """Measure (without the cache) the best FLOP/s of a square ``dtype`` matmul on ``device``."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    best: tuple[float, int, float] | None = None  # (FLOP/s, size, seconds)
    with torch.inference_mode():
        for size in CUDA_SIZES if device.type == "cuda" else SIZES:
            a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            seconds = _best_matmul(a, b, min_seconds, repeats)
            del a, b
            rate = 2 * size ** 3 / seconds
            if best is None or rate > best[0]:
                best = (rate, size, seconds)
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
                      min_seconds: float = MIN_SECONDS, repeats: int = REPEATS) -> ConvPeak:
    """Measure (without the cache) the best counted FLOP/s of a 3x3 convolution on ``device``."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    best: ConvPeak | None = None
    with torch.inference_mode():
        for shape in CONV_SHAPES:
            conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1, bias=False).to(device=device, dtype=dtype)
            x = torch.randn(shape).to(device=device, dtype=dtype)
            conv(x)
            sync()
            fastest, calls, spent = math.inf, 0, 0.0
            while calls < repeats or spent < min_seconds:
                start = time.perf_counter()
                conv(x)
                sync()
                elapsed = time.perf_counter() - start
                fastest, calls, spent = min(fastest, elapsed), calls + 1, spent + elapsed
            peak = ConvPeak(device=str(device), dtype=str(dtype).removeprefix("torch."),
                            threads=torch.get_num_threads(), shape=shape, seconds=fastest)
            if best is None or peak.flops_per_s > best.flops_per_s:
                best = peak
    return best


_conv_cache: dict[tuple[str, str, int], ConvPeak] = {}


def conv_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ConvPeak:
    """The device's 3x3 convolution FLOP/s for ``dtype``, measured on the first call, then cached."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (str(device), str(dtype), torch.get_num_threads())
    if key not in _conv_cache:
        _conv_cache[key] = measure_conv_peak(device, dtype)
    return _conv_cache[key]


def matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> MatmulPeak:
    """The device's matmul FLOP/s for ``dtype``, measured on the first call, then cached for the process."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (str(device), str(dtype), torch.get_num_threads())
    peak = _cache.get(key)
    if peak is None:
        peak = _cache[key] = measure_matmul_peak(device, dtype)
    return peak


def efficiency(flops: int | None, seconds: float | None, peak: MatmulPeak) -> float | None:
    """Achieved FLOP/s (``flops`` in ``seconds``) over ``peak``; None when either is unknown."""
    if not flops or not seconds or seconds <= 0 or math.isnan(seconds):
        return None
    return flops / seconds / peak.flops_per_s


def clear_cache() -> None:
    _cache.clear()
    _conv_cache.clear()


__all__ = ["ConvPeak", "MatmulPeak", "clear_cache", "conv_peak", "efficiency", "matmul_peak", "measure_conv_peak",
           "measure_matmul_peak"]
