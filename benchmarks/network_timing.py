"""Whole-network forward time: attnzoo's fwd_ms against torch.utils.benchmark on the same network, side by side.

For each network (plain, and with a block placed), builds it as ``attnzoo profile --network`` does
(``attnzoo.profiling.prepare``), then in interleaved rounds times a forward under inference mode twice: with
attnzoo's timer (``attnzoo.profiling.timing.time_callable``, what the ``fwd_ms`` column reports) and with
``torch.utils.benchmark.Timer.blocked_autorange``. Prints the median over rounds of the per-round ratio
attnzoo / torch.utils.benchmark; the target is within 10% (a ratio between 0.9 and 1.1).

``--star`` times instead the wall clock of ``attnzoo profile '*' --network resnet50 --shape 1,3,224,224
--mode infer`` (every block of the zoo in ResNet-50; the target is under 5 minutes on a 2-core machine), with
the load average before and after: on a shared machine the figure is only as good as the load it states.

    python benchmarks/network_timing.py [--rounds 5] [--min-time 0.5] [--shape 1,3,224,224] [--networks resnet18,vit-s]
                                        [--json FILE]
"""

from __future__ import annotations

import statistics

import common
from common import parser, print_header, print_table, write_json

CASES = [("resnet18", None, "1,3,224,224"), ("resnet50", None, "1,3,224,224"), ("resnet50", "cbam", "1,3,224,224"),
         ("mobilenet_v2", "coord-attention", "1,3,224,224"), ("vit-s", None, "1,3,224,224")]


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, default=5)
    cli.add_argument("--min-time", type=float, default=0.5)
    cli.add_argument("--shape", default=None, help="the input of every case instead of 1,3,224,224")
    cli.add_argument("--networks", default=None, help="only the cases of these networks, e.g. resnet18,vit-s")
    cli.add_argument("--star", action="store_true", help="time profile '*' --network resnet50 instead")
    args = cli.parse_args()
    if args.star:
        return star(args)
    import torch
    import torch.utils.benchmark as tub

    import attnzoo
    from attnzoo.networks.build import NetworkPlan
    from attnzoo.profiling.prepare import prepare
    from attnzoo.profiling.runner import ProfileOptions
    from attnzoo.profiling.timing import time_callable

    info = print_header("whole-network fwd_ms against torch.utils.benchmark")
    options = ProfileOptions(device="cpu", mode="infer", min_time=args.min_time).checked()
    rows = []
    for network, block, shape in CASES:
        if args.networks and network not in args.networks.split(","):
            continue
        shape = args.shape or shape
        spec = attnzoo.get_spec(block) if block else None
        prepared = prepare(spec, tuple(int(d) for d in shape.split(",")), options, None,
                           NetworkPlan(attnzoo.get_network(network)))
        ours, theirs = [], []
        with torch.inference_mode():
            timer = tub.Timer("model(x)", globals={"model": prepared.module, "x": prepared.inputs[0]},
                              num_threads=torch.get_num_threads())
            for r in range(args.rounds):
                sides = [("ours", lambda: ours.append(time_callable(prepared.forward, "cpu", args.min_time,
                                                                    options.warmup).median_ms)),
                         ("theirs", lambda: theirs.append(timer.blocked_autorange(min_run_time=args.min_time)
                                                          .median * 1e3))]
                for _, run in (sides if r % 2 == 0 else sides[::-1]):
                    run()
        ratio = statistics.median(a / b for a, b in zip(ours, theirs))
        rows.append({"network": network, "block": block or "none", "shape": shape,
                     "attnzoo_fwd_ms": round(statistics.median(ours), 2),
                     "torch_benchmark_ms": round(statistics.median(theirs), 2), "ratio": round(ratio, 3),
                     "within_10%": 0.9 <= ratio <= 1.1})
    print_table(rows, title=f"median of {args.rounds} interleaved rounds; ratio = attnzoo / torch.utils.benchmark")
    write_json(args.json, {"machine": info, "rows": rows})


def star(args) -> None:
    import os
    import subprocess
    import sys
    import tempfile
    import time

    info = print_header("profile '*' --network resnet50 --shape 1,3,224,224 --mode infer: wall time")
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "rows.csv")
        command = [sys.executable, "-m", "attnzoo", "profile", "*", "--network", "resnet50", "--shape",
                   "1,3,224,224", "--mode", "infer", "--format", "csv", "-o", out]
        before = common.load_average()
        start = time.perf_counter()
        done = subprocess.run(command, cwd=common.ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = common.load_average()
        with open(out, newline="") as handle:
            import csv

            rows = list(csv.DictReader(handle))
    measured = sum(r["status"] == "ok" for r in rows)
    skipped = sum(r["status"].startswith("skipped") for r in rows)
    result = {"seconds": round(seconds, 1), "rows": len(rows), "measured": measured, "skipped": skipped,
              "failed": len(rows) - measured - skipped, "exit": done.returncode, "load_before": before,
              "load_after": after, "under_5_min": seconds < 300}
    print_table([result])
    write_json(args.json, {"machine": info, "star": result})


if __name__ == "__main__":
    main()
