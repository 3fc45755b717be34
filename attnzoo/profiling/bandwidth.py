"""The device's memory bandwidth as a function of the working set, for the roofline's memory ceiling.

Measured, not taken from a data sheet: for sizes from 256 KiB to 1 GiB, the best time of a copy (reads S
bytes and writes S: 2 S moved, working set 2 S) and of a sum (reads S: working set S). At each working set
the faster of the two rates is the ceiling: a copy also pays for write-allocate traffic that a block which
mostly reads does not, and taking the faster keeps the roofline a bound that no block can beat. Small
working sets stay in the caches and move far faster than DRAM allows, so a row reads the bandwidth at its
own working set (a cache-aware roofline). Measured once per process and cached per (device, threads).
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

_cache: dict[tuple[str, int], "BandwidthCurve"] = {}


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


def _best_seconds(fn, device: torch.device) -> float:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    fn()  # warm-up: first touch of the pages, kernel selection
    sync()
    best, calls, spent = math.inf, 0, 0.0
    while calls < MIN_CALLS or spent < MIN_SECONDS:
        start = time.perf_counter()
        fn()
        sync()
        elapsed = time.perf_counter() - start
        best, calls, spent = min(best, elapsed), calls + 1, spent + elapsed
    return best


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


def measure_bandwidth(device: str | torch.device = "cpu", sizes: tuple[int, ...] = SIZES) -> BandwidthCurve:
    """Measure (without the cache) the bandwidth curve of ``device``."""
    device = torch.device(device)
    copies: list[tuple[float, float]] = []
    reads: list[tuple[float, float]] = []
    with torch.inference_mode():
        for size in sizes:
            if not _fits(device, size):
                break
            src = torch.ones(size // 4, dtype=torch.float32, device=device)
            dst = torch.empty_like(src)
            copies.append((2.0 * size, 2 * size / _best_seconds(lambda: dst.copy_(src), device) / 1e9))
            reads.append((float(size), size / _best_seconds(lambda: src.sum(), device) / 1e9))
            del src, dst
    if not copies:
        raise RuntimeError(f"no memory on {device} to measure its bandwidth")
    return BandwidthCurve(device=str(device), threads=torch.get_num_threads(),
                          copy_sets=tuple(w for w, _ in copies), copy_gbs=tuple(g for _, g in copies),
                          read_sets=tuple(w for w, _ in reads), read_gbs=tuple(g for _, g in reads))


def bandwidth_curve(device: str | torch.device = "cpu") -> BandwidthCurve:
    """The bandwidth curve of ``device``, measured on the first call, then cached for the process."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (str(device), torch.get_num_threads())
    curve = _cache.get(key)
    if curve is None:
        curve = _cache[key] = measure_bandwidth(device)
    return curve


def clear_cache() -> None:
    _cache.clear()


__all__ = ["BandwidthCurve", "bandwidth_curve", "clear_cache", "measure_bandwidth"]
