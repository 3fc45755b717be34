"""Latency in the manner of torch.utils.benchmark's ``blocked_autorange``.

Warm up (the first calls pay for allocation, kernel selection and caches), size a block of calls so that
the clock's overhead is negligible, then time blocks until ``min_time`` seconds have been spent, and report
the median and the interquartile range of the per-call time over the blocks. On CUDA the device is
synchronised before the clock starts and after each block (kernels are asynchronous).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

#: Fewest blocks for a median and a spread; a call slower than max_time / MIN_BLOCKS gets fewer.
MIN_BLOCKS = 3
#: Warm-up lasts at least ``warmup`` calls and this fraction of min_time (at most min_time).
WARMUP_FRACTION = 0.1
#: A block lasts at least this fraction of min_time, so that perf_counter's resolution does not matter.
BLOCK_FRACTION = 0.05


@dataclass(frozen=True)
class Timing:
    """Per-call time over ``blocks`` timed blocks of ``block_size`` calls (``runs`` calls in all).

    ``iqr_ms`` is NaN when a call is so slow that a single block fitted in ``max_time``.
    """

    median_ms: float
    iqr_ms: float
    runs: int
    blocks: int
    block_size: int
    warmup: int
    times_ms: tuple[float, ...]

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ms)


def _synchronizer(device: str | torch.device) -> Callable[[], None]:
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def time_callable(fn: Callable[[], Any], device: str | torch.device = "cpu", min_time: float = 1.0,
                  warmup: int = 3, max_time: float | None = None) -> Timing:
    """Time ``fn()``: warm up for ``warmup`` calls and 10% of ``min_time`` (at least one call, at most
    ``min_time``), then blocks of calls, sized from the fastest warm-up call, until
    ``min_time`` seconds of timed calls and at least 3 blocks, or ``max_time`` seconds (default
    10 x min_time, at least one block). Returns the median and IQR of the per-call time in milliseconds.
    """
    if min_time <= 0:
        raise ValueError("min_time must be positive")
    max_time = max(min_time, 10 * min_time if max_time is None else max_time)
    sync = _synchronizer(device)
    clock = time.perf_counter

    sync()
    warm_calls, per_call = 0, math.inf
    warm_start = clock()
    while True:
        start = clock()
        fn()
        sync()
        per_call = min(per_call, clock() - start)  # the fastest: the first calls pay one-off costs
        warm_calls += 1
        warm_spent = clock() - warm_start
        if warm_spent >= min_time or (warm_calls >= warmup and warm_spent >= WARMUP_FRACTION * min_time):
            break

    block_size = max(1, math.ceil(BLOCK_FRACTION * min_time / max(per_call, 1e-9)))
    block_size = min(block_size, 10_000)
    times: list[float] = []
    spent = 0.0
    while True:
        sync()
        start = clock()
        for _ in range(block_size):
            fn()
        sync()
        elapsed = clock() - start
        spent += elapsed
        times.append(elapsed / block_size)
        if (spent >= min_time and len(times) >= MIN_BLOCKS) or spent >= max_time:
            break
    ordered = sorted(times)
    median = statistics.median(ordered)
    iqr = _quantile(ordered, 0.75) - _quantile(ordered, 0.25) if len(ordered) > 1 else math.nan
    return Timing(median_ms=median * 1e3, iqr_ms=iqr * 1e3, runs=len(times) * block_size, blocks=len(times),
                  block_size=block_size, warmup=warm_calls, times_ms=tuple(t * 1e3 for t in times))


class threads_set:
    """Set torch's CPU threads for a while (None leaves them)."""

    def __init__(self, threads: int | None):
        self.threads = threads

    def __enter__(self):
        import torch

        self.saved = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.saved)


