"""What every benchmark script shares: the machine header, side-by-side timing, tables and JSON.

The machine these scripts run on may be busy with other work. Every target is therefore a ratio of two
things measured side by side in one run: :func:`side_by_side` interleaves the candidates in rounds
(alternating their order) and reports, for each pair, the median over the rounds of the per-round ratio,
so that a slow spell of the machine slows both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine(device: str | None = None) -> dict[str, Any]:
    """The machine a figure was measured on: CPU, cores, torch, threads, device, load."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "python": platform.python_version(),
        "device": "cpu", "load_1min": load_average(),
    }
    if device and device.startswith("cuda"):
        info["device"] = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return info


def machine_line(info: Mapping[str, Any]) -> str:
    return (f"{info['cpu']}, {info['cores']} cores, {info['threads']} torch threads, torch {info['torch']}, "
            f"device {info['device']}, load {info['load_1min']} at start")


def print_header(title: str, devices: Sequence[str] = ("cpu",)) -> dict[str, Any]:
    info = machine(next((d for d in devices if d.startswith("cuda")), None))
    print(f"== {title}")
    print(f"machine: {machine_line(info)}")
    sys.stdout.flush()
    return info


def devices() -> list[str]:
    """cpu, and cuda when present."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def side_by_side(fns: Mapping[str, Callable[[], Any]], device: str = "cpu", rounds: int = 5,
                 calls: int = 1, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Time every callable in interleaved rounds; each round times ``calls`` calls of each, in an order
    that rotates from round to round. Returns per name: ``median_ms`` (median over rounds of the
    per-round mean), ``min_ms``, ``round_ms`` (the per-round figures) and ``rounds``.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
        sync(device)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            fn = fns[name]
            sync(device)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            per_round[name].append((time.perf_counter() - start) / calls * 1e3)
    return {name: {"median_ms": statistics.median(t), "min_ms": min(t), "round_ms": t, "rounds": rounds}
            for name, t in per_round.items()}


def ratio(times: Mapping[str, Mapping[str, Any]], numerator: str, denominator: str) -> float:
    """Median over rounds of the per-round ratio numerator / denominator (side by side, so robust to load)."""
    a, b = times[numerator]["round_ms"], times[denominator]["round_ms"]
    return statistics.median(x / y for x, y in zip(a, b))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def print_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
                title: str | None = None) -> list[dict[str, Any]]:
    """Print rows as an aligned plain-text table and return them as a list of dicts."""
    rows = [dict(row) for row in rows]
    if not rows:
        return rows
    columns = list(columns or rows[0])
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    if title:
        print(f"-- {title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    sys.stdout.flush()
    return rows


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="FILE", help="also write the figures and the machine to FILE as JSON")
    return p


def write_json(path: str | None, payload: Mapping[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {path}", file=sys.stderr)


def replace_between(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text from marker ``start`` to marker ``end`` (both kept, given in ``section``) in ``path``."""
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    path.write_text(head + section + rest.split(end, 1)[1])
    print(f"rewrote {start} ... {end} in {path}", file=sys.stderr)
