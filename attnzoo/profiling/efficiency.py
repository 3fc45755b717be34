"""How far a block is from the hardware: achieved FLOP/s over the device's measured matmul FLOP/s.

The reference is measured, not taken from a data sheet: the best of a few square matrix products of the
dtype on the device, with the current number of CPU threads, sized so that one product takes at least
~0.1 s (or the largest size tried). It is measured once per process and cached per (device, dtype,
threads). A dense matmul is the fastest thing most devices do, so ``efficiency`` is a fraction of 1
for nearly every block: 0.6 means the forward runs at 60% of the rate of a large matmul; a block far below
that is bound by memory traffic or by small, poorly shaped operations, not by arithmetic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

#: Matrix sizes tried, smallest first; the first whose product takes MIN_SECONDS is used.
SIZES = (512, 1024, 2048, 4096, 8192)
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


def _time_matmul(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    device = a.device
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        min_seconds: float = MIN_SECONDS, repeats: int = REPEATS) -> MatmulPeak:
    """Measure (without the cache) the best FLOP/s of a square ``dtype`` matmul on ``device``."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    size, seconds = SIZES[0], math.inf
    with torch.inference_mode():
        for size in SIZES:
            a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
            _time_matmul(a, b, 1)  # warm-up: library initialisation, kernel selection
            seconds = _time_matmul(a, b, repeats)
            del a, b
            if seconds >= min_seconds:
                break
    return MatmulPeak(device=str(device), dtype=str(dtype).removeprefix("torch."),
                      threads=torch.get_num_threads(), size=size, seconds=seconds)


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


__all__ = ["MatmulPeak", "clear_cache", "efficiency", "matmul_peak", "measure_matmul_peak"]
