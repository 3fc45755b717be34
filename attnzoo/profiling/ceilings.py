"""The device's ceilings for the roofline, measured once per machine and kept on disk.

A ceiling depends on the machine and on how it is asked, never on the block: so it is stored in the user's
cache folder (``$ATTNZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnzoo``, else ``~/.cache/attnzoo``), one JSON
file per key, and read by every later run, every shard and every Ray worker on the same node. The key holds
everything that changes a ceiling: the device (CPU model and core count, or GPU name, memory and driver),
torch's version, the dtype the arithmetic runs in and the threads; the bandwidth curve does not depend on the
dtype, so one curve serves them all. A file is written whole under a temporary name and renamed; a lock
beside it keeps two processes on one machine from measuring the same ceiling at once (the second reads what
the first wrote). A cache folder that cannot be written, or a file that cannot be read, costs one line on
stderr: the run measures and goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

FORMAT = 1  # the layout of a cache file; another layout is measured again

_warned: set[str] = set()


def cache_dir() -> Path:
    """Where the ceilings are kept."""
    if os.environ.get("ATTNZOO_CACHE_DIR"):
        return Path(os.environ["ATTNZOO_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "attnzoo"


def note(text: str) -> None:
    """One line on stderr, once per process for the same text."""
    if text not in _warned:
        _warned.add(text)
        print(f"attnzoo: note: {text}", file=sys.stderr, flush=True)


def device_identity(device: str) -> dict[str, Any]:
    """What names the hardware behind ``device``: CPU model and cores, or GPU name, memory and driver."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        props = torch.cuda.get_device_properties(index)
        driver = ""
        with contextlib.suppress(Exception):
            driver = str(torch.cuda.driver_version()) if hasattr(torch.cuda, "driver_version") else ""
        return {"kind": "cuda", "name": props.name, "memory": int(props.total_memory), "driver": driver,
                "cuda": torch.version.cuda or ""}
    model = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    if not model:
        import platform

        model = platform.processor() or platform.machine()
    return {"kind": "cpu", "name": model, "cores": os.cpu_count()}


def make_key(kind: str, device: str, dtype: str | None, threads: int) -> dict[str, Any]:
    """The cache key of one ceiling (``dtype`` None for the bandwidth, which is measured in bytes)."""
    import torch

    return {"ceiling": kind, "device": device_identity(device), "torch": torch.__version__,
            "dtype": dtype, "threads": threads}


def _file(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"{key['ceiling']}-{digest}.json"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read(key: dict[str, Any]) -> dict[str, Any] | None:
    """The stored record for ``key`` ({"measured_at", "value", ...}), or None (absent, corrupt, foreign or
    of another layout: said once on stderr and measured again)."""
    path = _file(key)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None  # not measured yet (or no folder: writing will say so, once)
    except OSError as exc:
        note(f"cannot read the ceilings kept in {path.parent} ({exc.strerror or exc}); measuring them")
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"written by another attnzoo (format {record.get('format')!r}, this one reads {FORMAT})"
                             if isinstance(record, dict) else "not a record")
        if record.get("key") != key or not isinstance(record.get("value"), dict):
            raise ValueError("not the ceilings of this machine and setting")
        from attnzoo._version import __version__

        if record.get("attnzoo_version") != __version__:  # its measurement may have changed since
            raise ValueError(f"kept by attnzoo {record.get('attnzoo_version')}, this is {__version__}")
    except (ValueError, json.JSONDecodeError) as exc:
        note(f"ignoring the cached ceilings {path}: {exc}; measuring them again")
        return None
    return record


def write(key: dict[str, Any], value: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Store ``value`` for ``key`` (whole, renamed into place); returns the record. A folder that cannot be
    written costs one line on stderr."""
    from attnzoo._version import __version__

    record = {"format": FORMAT, "attnzoo_version": __version__, "key": key, "measured_at": _now(),
              "seconds": round(seconds, 3), "value": value}
    path = _file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        note(f"cannot keep the device's ceilings in {path.parent} ({exc.strerror or exc}): they are measured "
             "again by every run (set ATTNZOO_CACHE_DIR to a writable folder)")
    return record


@contextlib.contextmanager
def _locked(key: dict[str, Any]):
    """Hold the key's lock file while measuring (no lock where the folder cannot be written)."""
    path = _file(key).with_suffix(".lock")
    handle = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX)
    except (OSError, ImportError):
        if handle is not None:
            handle.close()
        handle = None
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # closing releases the lock


def cached(key: dict[str, Any], measure: Callable[[], dict[str, Any]], fresh: bool = False) -> dict[str, Any]:
    """The record of ``key``: read from the cache, or measured by ``measure()`` (a JSON-ready dict) and
    stored. ``fresh``: measured again whatever the cache holds."""
    import time

    if not fresh:
        found = read(key)
        if found is not None:
            return found
    with _locked(key):
        if not fresh:
            found = read(key)  # another process measured it while this one waited for the lock
            if found is not None:
                return found
        started = time.perf_counter()
        value = measure()
        return write(key, value, time.perf_counter() - started)


def entries() -> list[dict[str, Any]]:
    """Every record in the cache folder that this attnzoo can read, oldest first (for ``attnzoo calibrate
    --show``); unreadable files are skipped."""
    folder = cache_dir()
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("format") == FORMAT and isinstance(record.get("key"), dict):
            records.append(record)
    return sorted(records, key=lambda r: str(r.get("measured_at")))


def clear() -> int:
    """Forget every stored ceiling; returns how many files were removed."""
    folder = cache_dir()
    removed = 0
    for path in list(folder.glob("*.json")) + list(folder.glob("*.lock")) if folder.is_dir() else []:
        with contextlib.suppress(OSError):
            path.unlink()
            removed += path.suffix == ".json"
    return removed


def as_json(value: Any) -> dict[str, Any]:
    """A ceiling dataclass (MatmulPeak, ConvPeak, BandwidthCurve) as JSON-ready data."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}


def from_json(kind: str, value: dict[str, Any]) -> Any:
    """The ceiling dataclass of ``kind`` back from :func:`as_json`'s data (TypeError: not its fields)."""
    from attnzoo.profiling.bandwidth import BandwidthCurve
    from attnzoo.profiling.efficiency import ConvPeak, MatmulPeak

    load = {"matmul": MatmulPeak, "conv": ConvPeak, "bandwidth": BandwidthCurve}[kind]
    return load(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})


__all__ = ["FORMAT", "as_json", "cache_dir", "cached", "clear", "device_identity", "entries", "from_json",
           "make_key", "note", "read", "write"]
