"""Whole-network forward time: attnzoo's fwd_ms against torch.utils.benchmark on the same network, side by side.

For each network (plain, and with a block placed), builds it as ``attnzoo profile --network`` does
(``attnzoo.profiling.prepare``), then in interleaved rounds times a forward under inference mode twice: with
attnzoo's timer (``attnzoo.profiling.timing.time_callable``, what the ``fwd_ms`` column reports) and with
``torch.utils.benchmark.Timer.blocked_autorange``. Prints the median over rounds of the per-round ratio
attnzoo / torch.utils.benchmark; the target is within 10% (a ratio between 0.9 and 1.1).

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
    args = cli.parse_args()
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


if __name__ == "__main__":
    main()
