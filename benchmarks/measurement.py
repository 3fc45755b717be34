"""attnzoo's forward latency against torch.utils.benchmark.Timer's adaptive_autorange.

For a handful of blocks, the same module (eval mode, under inference mode) and the same inputs are timed
by attnzoo.profiling.timing.time_callable with ``attnzoo profile``'s defaults (warm-up 3, min-time 0.3 s)
and by torch.utils.benchmark.Timer(...).adaptive_autorange() (stops when IQR / median < 0.1), with the
Timer given the same number of threads (its default is one thread). ``agreement`` is attnzoo's median
over torch's; the target is within 10% (0.9 to 1.1). The two methods alternate over ``--pairs`` pairs
and the ratio is the median of the per-pair ratios, so a slow spell of the machine hits both. The wall
time each method spent (warm-up included) is reported too.

    python benchmarks/measurement.py [--shape 8,64,32,32] [--pairs 5] [--json FILE]
"""

from __future__ import annotations

import statistics
import time

import common  # noqa: F401  (puts the checkout on sys.path)
from common import devices, parser, print_header, print_table, sync, write_json

BLOCKS = ("se", "cbam", "sk", "external-attention", "mha", "sdpa", "vit-attention")
SHAPE = "8,64,32,32"
TOLERANCE = 0.10


def measure(name: str, shape, device: str, pairs: int) -> dict:
    import torch
    import torch.utils.benchmark as benchmark

    import attnzoo
    from attnzoo.profiling.runner import ProfileOptions
    from attnzoo.profiling.timing import time_callable

    defaults = ProfileOptions()
    module, inputs = attnzoo.create(name, shape, device=device)
    module.eval()
    ours_ms, torch_ms, ratios, ours_wall, torch_wall, torch_spread = [], [], [], [], [], []
    with torch.inference_mode():
        fn = lambda: module(*inputs)  # noqa: E731
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        def ours() -> None:
            sync(device)
            start = time.perf_counter()
            ours_ms.append(time_callable(fn, device, defaults.min_time, defaults.warmup).median_ms)
            ours_wall.append(time.perf_counter() - start)

        def reference() -> None:
            start = time.perf_counter()
            measured = timer.adaptive_autorange(threshold=0.1)
            torch_ms.append(measured.median * 1e3)
            torch_spread.append(measured.iqr / measured.median)
            torch_wall.append(time.perf_counter() - start)

        for pair in range(pairs):  # alternate which goes first, so neither always follows the other
            for method in ((ours, reference) if pair % 2 == 0 else (reference, ours)):
                method()
            ratios.append(ours_ms[-1] / torch_ms[-1])
    agreement = statistics.median(ratios)
    return {"block": name, "device": device, "shape": ",".join(map(str, shape)),
            "attnzoo_ms": statistics.median(ours_ms), "torch_ms": statistics.median(torch_ms),
            "agreement": agreement, "worst_pair": max(ratios, key=lambda r: abs(r - 1)),
            "torch_iqr_rel": statistics.median(torch_spread),
            "attnzoo_wall_s": statistics.median(ours_wall), "torch_wall_s": statistics.median(torch_wall),
            "ok": abs(agreement - 1) <= TOLERANCE}


def main(argv=None) -> dict:
    from attnzoo.build import parse_shape

    p = parser(__doc__.split("\n")[0])
    p.add_argument("--shape", default=SHAPE, help=f"B,C,H,W [default: {SHAPE}]")
    p.add_argument("--pairs", type=int, default=5, help="alternating attnzoo / torch measurements [default: 5]")
    p.add_argument("--blocks", default=",".join(BLOCKS), help="comma-separated block names")
    p.add_argument("--device", action="append", help="cpu, cuda (repeatable) [default: cpu, and cuda if present]")
    args = p.parse_args(argv)
    shape = parse_shape(args.shape)
    chosen = args.device or devices()
    info = print_header("measurement: attnzoo time_callable vs torch.utils.benchmark adaptive_autorange", chosen)
    from attnzoo.profiling.runner import ProfileOptions

    defaults = ProfileOptions()
    print(f"shape {args.shape}; attnzoo: profile defaults (warm-up {defaults.warmup}, min-time {defaults.min_time} s); "
          "torch: "
          f"Timer.adaptive_autorange(threshold=0.1) with the same threads; {args.pairs} alternating pairs; "
          f"agreement = attnzoo / torch (target within {TOLERANCE:.0%}); torch_iqr_rel: the Timer's own IQR / "
          "median (it stops below 0.1, or after 10 s); wall = seconds per measurement")
    rows = []
    for device in chosen:
        rows += [measure(name, shape, device, args.pairs) for name in args.blocks.split(",") if name]
    print_table(rows, ["block", "device", "attnzoo_ms", "torch_ms", "agreement", "worst_pair", "torch_iqr_rel", "attnzoo_wall_s",
                       "torch_wall_s", "ok"])
    agreements = [row["agreement"] for row in rows]
    summary = {"blocks": len(rows), "within": sum(row["ok"] for row in rows),
               "worst_agreement": max(agreements, key=lambda r: abs(r - 1)),
               "attnzoo_wall_s": sum(row["attnzoo_wall_s"] for row in rows),
               "torch_wall_s": sum(row["torch_wall_s"] for row in rows)}
    print(f"{summary['within']} of {summary['blocks']} blocks agree within {TOLERANCE:.0%}; worst agreement "
          f"{summary['worst_agreement']:.3f}; wall time per measurement, summed over blocks: attnzoo "
          f"{summary['attnzoo_wall_s']:.1f} s, torch {summary['torch_wall_s']:.1f} s")
    payload = {"benchmark": "measurement", "machine": info, "shape": args.shape, "pairs": args.pairs,
               "rows": rows, "summary": summary}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
