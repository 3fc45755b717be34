"""Every block eager against torch.compile'd: forward time side by side, and how close each comes to the roofline.

For each block at ``--shape`` (default 8,64,32,32) the block is prepared twice by attnzoo's own
preparation (eager, and ``--compile``), both forwards are timed in interleaved rounds (so a slow spell of
the machine slows both), and ``of_limit`` = roofline_ms / median forward ms is computed for each from the
same roofline (FLOPs and compulsory bytes of the block, the device's measured matmul rate and bandwidth at
the block's working set). The summary counts the blocks that reach half their limit in each mode and the
median compiled / eager speed-up. A block that fails to compile is reported and counted as eager only.

    python benchmarks/roofline.py [--shape 8,64,32,32] [--blocks se,cbam] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import statistics
import time

import common  # noqa: F401  (puts the checkout on sys.path)
from common import parser, print_header, print_table, ratio, side_by_side, write_json

SHAPE = "8,64,32,32"


def measure(name: str, shape, options, calibration, rounds: int) -> dict:
    import dataclasses

    import torch

    import attnzoo
    from attnzoo.profiling.measurements import roofline
    from attnzoo.profiling.prepare import BlockFailure, prepare
    from attnzoo.profiling.traffic import count_traffic
    from attnzoo.profiling.flops import count_macs

    spec = attnzoo.get_spec(name)
    row = {"block": name, "family": spec.family}
    try:
        eager = prepare(spec, shape, options)
    except BlockFailure as failure:
        return {**row, "status": f"eager failed: {failure}"}
    flops = count_macs(eager.eager, eager.inputs).flops
    bytes_min = count_traffic(eager.eager, eager.inputs).bytes_min
    started = time.perf_counter()
    try:
        compiled = prepare(spec, shape, dataclasses.replace(options, compile=True))
        compile_s = time.perf_counter() - started
    except BlockFailure as failure:
        compiled, compile_s = None, None
        row["status"] = f"compile failed: {str(failure)[:120]}"
    fns = {"eager": eager.forward}
    if compiled is not None:
        fns["compiled"] = compiled.forward
    with torch.inference_mode():
        times = side_by_side(fns, options.device, rounds=rounds, warmup=2)
    eager_ms = times["eager"]["median_ms"]
    row.update(status=row.get("status", "ok"), flops=flops, bytes_min=bytes_min, eager_ms=round(eager_ms, 4),
               eager_of_limit=roofline(flops, bytes_min, eager_ms, calibration).get("of_limit"))
    if compiled is not None:
        compiled_ms = times["compiled"]["median_ms"]
        row.update(compiled_ms=round(compiled_ms, 4), speedup=round(ratio(times, "eager", "compiled"), 3),
                   compiled_of_limit=roofline(flops, bytes_min, compiled_ms, calibration).get("of_limit"),
                   compile_s=round(compile_s, 1))
    return row


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--shape", default=SHAPE)
    p.add_argument("--blocks", default="*", help="comma-separated names or wildcards (default: every block)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import attnzoo
    from attnzoo.build import parse_shape
    from attnzoo.profiling.runner import ProfileOptions, calibrate
    from attnzoo.registry import resolve_names

    info = print_header("roofline: every block eager against torch.compile", [args.device])
    options = ProfileOptions(device=args.device, mode="infer").checked()
    calibration = calibrate(options)
    print(f"ceilings: matmul {calibration.matmul.gflops:.1f} GFLOP/s ({calibration.matmul.dtype}); bandwidth "
          + ", ".join(f"{w / 2 ** 20:g} MiB {g:.0f} GB/s" for w, g in
                      zip(calibration.bandwidth.copy_sets, calibration.bandwidth.copy_gbs)) + " (copies)")
    shape = parse_shape(args.shape)
    names = resolve_names(args.blocks.split(","))
    started = time.perf_counter()
    rows = []
    for name in names:
        rows.append(measure(name, shape, options, calibration, args.rounds))
        r = rows[-1]
        print(f"  {name}: eager {r.get('eager_ms')} ms (of limit {r.get('eager_of_limit')}), compiled "
              f"{r.get('compiled_ms')} ms (of limit {r.get('compiled_of_limit')}) {r['status']}", flush=True)
    seconds = time.perf_counter() - started
    columns = ["block", "family", "eager_ms", "compiled_ms", "speedup", "eager_of_limit", "compiled_of_limit",
               "compile_s", "status"]
    print_table(rows, columns, title=f"{args.shape} on {args.device}")
    measured = [r for r in rows if r.get("eager_of_limit") is not None]
    both = [r for r in measured if r.get("compiled_of_limit") is not None]
    summary = {
        "blocks": len(rows), "measured": len(measured), "compiled": len(both),
        "eager_half_limit": sum(r["eager_of_limit"] >= 0.5 for r in measured),
        "compiled_half_limit": sum(r["compiled_of_limit"] >= 0.5 for r in both),
        "median_speedup": statistics.median(r["speedup"] for r in both) if both else None,
        "max_of_limit": max([r["eager_of_limit"] for r in measured] + [r["compiled_of_limit"] for r in both]),
        "matmul_gflops": round(calibration.matmul.gflops, 1), "dram_gbs": round(calibration.bandwidth.dram_gbs, 1),
        "wall_s": round(seconds, 1),
    }
    print_table([summary], title="summary")
    payload = {"machine": info, "shape": args.shape, "device": args.device, "rows": rows, "summary": summary}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
