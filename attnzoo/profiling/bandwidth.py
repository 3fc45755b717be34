"""The device's memory bandwidth as a function of the working set, for the roofline's memory ceiling.

Measured, not taken from a data sheet: for sizes from 256 KiB up (to 1 GiB, in a bounded time and an
eighth of the free memory at most: :func:`measure_bandwidth`), the best time of a copy (reads S
bytes and writes S: 2 S moved, working set 2 S) and of a sum (reads S: working set S). At each working set
the faster of the two rates is the ceiling: a copy also pays for write-allocate traffic that a block which
mostly reads does not, and taking the faster keeps the roofline a bound that no block can beat. Small
working sets stay in the caches and move far faster than DRAM allows, so a row reads the bandwidth at its
own working set (a cache-aware roofline). Measured once per machine and threads, and kept on disk
(:func:`attnzoo.profiling.runner.calibrate`).
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass

import torch

KIB, MIB = 1024, 1024 * 1024
#: Bytes per buffer: 256 KiB to 1 GiB, a factor of 4 apart.
SIZES = tuple(256 * KIB * 4 ** i for i in range(7))
#: Each size is timed for at least this long and this many calls; the best call counts.
MIN_SECONDS = 0.05
MIN_CALLS = 3
#: At most this long for the whole curve, and the size whose copy takes this long is the last.
BUDGET_S = 1.5
SLOW_CALL_S = 0.03

def _interpolate(xs: tuple[float, ...], ys: tuple[float, ...], x: float) -> float:
    """Log-log interpolation over ascending ``xs``, clamped at the ends."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    t = math.log(x / xs[i - 1]) / math.log(xs[i] / xs[i - 1])
    return math.exp(math.log(ys[i - 1]) + t * (math.log(ys[i]) - math.log(ys[i - 1])))


@dataclass(frozen=True)
class BandwidthCurve:
    """GB/s of copies and of reads against working-set bytes (ascending), measured on ``device``."""

    device: str
    threads: int
    copy_sets: tuple[float, ...]
    copy_gbs: tuple[float, ...]
    read_sets: tuple[float, ...]
    read_gbs: tuple[float, ...]

    def at(self, working_set: float) -> float:
        """The ceiling in GB/s for ``working_set`` bytes: the faster of copy and read, each interpolated on
        log-log between measured sizes and clamped at the ends."""
        return max(_interpolate(self.copy_sets, self.copy_gbs, working_set),
                   _interpolate(self.read_sets, self.read_gbs, working_set))

    def faster(self, other: "BandwidthCurve") -> "BandwidthCurve":
        """Point by point the faster of two curves measured at the same sizes (e.g. with 1 and N threads).
        A curve stops at the sizes that fit in free memory, so two curves measured a moment apart on a busy
        machine may differ in length: the sizes both reached are kept."""
        copies, reads = min(len(self.copy_sets), len(other.copy_sets)), min(len(self.read_sets), len(other.read_sets))
        if (self.copy_sets[:copies], self.read_sets[:reads]) != (other.copy_sets[:copies], other.read_sets[:reads]):
            raise ValueError("curves measured at different sizes")
        best = lambda a, b, n: tuple(max(x, y) for x, y in zip(a[:n], b[:n]))  # noqa: E731
        return BandwidthCurve(self.device, max(self.threads, other.threads), self.copy_sets[:copies],
                              best(self.copy_gbs, other.copy_gbs, copies), self.read_sets[:reads],
                              best(self.read_gbs, other.read_gbs, reads))

    @property
    def dram_gbs(self) -> float:
        """The bandwidth of the largest working set measured: main memory."""
        return self.at(max(self.copy_sets[-1], self.read_sets[-1]))


def _best_seconds(fn, device: torch.device, deadline: float) -> float:
    from attnzoo.profiling.efficiency import best_call

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    return best_call(fn, sync, MIN_SECONDS, MIN_CALLS, deadline)


#: The largest share of free memory the two buffers of a size may take: the curve stops below it, so a small
#: profile on a laptop or in a CI container does not take gigabytes (on the CPU, an eighth of what is free).
CUDA_SHARE, CPU_SHARE = 1 / 4, 1 / 8


def _fits(device: torch.device, nbytes: int) -> bool:
    """Whether two buffers of ``nbytes`` stay within a small share of the device's free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 2 * nbytes <= CUDA_SHARE * free
    try:
        import os

        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return nbytes <= 256 * MIB
    return 2 * nbytes <= CPU_SHARE * available


def measure_bandwidth(device: str | torch.device = "cpu", sizes: tuple[int, ...] = SIZES,
                      budget_s: float = BUDGET_S) -> BandwidthCurve:
    """Measure (without the cache) the bandwidth curve of ``device``, in about ``budget_s`` at most: sizes
    grow until a copy takes :data:`SLOW_CALL_S` (the working set is then far past the caches), the time runs
    out or the next pair would take more than an eighth of the free memory."""
    device = torch.device(device)
    deadline = time.perf_counter() + budget_s
    copies: list[tuple[float, float]] = []
    reads: list[tuple[float, float]] = []
    with torch.inference_mode():
        for size in sizes:
            if not _fits(device, size) or (copies and time.perf_counter() >= deadline):
                break
            src = torch.ones(size // 4, dtype=torch.float32, device=device)
            dst = torch.empty_like(src)
            copy_s = _best_seconds(lambda: dst.copy_(src), device, deadline)
            copies.append((2.0 * size, 2 * size / copy_s / 1e9))
            reads.append((float(size), size / _best_seconds(lambda: src.sum(), device, deadline) / 1e9))
            src = dst = None  # freed before the next, larger pair
            if copy_s > SLOW_CALL_S:
                break
    if not copies:
        raise RuntimeError(f"no memory on {device} to measure its bandwidth")
    return BandwidthCurve(device=str(device), threads=torch.get_num_threads(),
                          copy_sets=tuple(w for w, _ in copies), copy_gbs=tuple(g for _, g in copies),
                          read_sets=tuple(w for w, _ in reads), read_gbs=tuple(g for _, g in reads))


__all__ = ["BandwidthCurve", "measure_bandwidth"]
