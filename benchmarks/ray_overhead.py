"""What Ray costs on one node: `attnzoo profile --all --mode infer` with and without `--ray`, side by side.

Both runs are fresh processes of the same command, interleaved (plain, Ray, then Ray, plain for a second
round...); the Ray run starts a local Ray on this machine (its start-up is part of the cost) and runs one unit
at a time with all the CPUs, as the plain run does. Target: Ray's wall time at most 1.25x the plain run's.
The rows of the two runs must be the same units with the same MACs.

From the same run, the per-unit wall time (eager), and that of a few blocks under --compile, give a
campaign's size on paper: every block x 4 shapes x eager and compiled, spread over N workers.

    python benchmarks/ray_overhead.py [--rounds 1] [--compile-blocks se,cbam,mha,sdpa] [--workers 8] [--json FILE]
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)
from common import parser, print_header, print_table, write_json
from startup import attnzoo_command

TARGET = 1.25
SHAPE = "2,64,32,32"
PROFILE = ["profile", "--all", "--shape", SHAPE, "--mode", "infer"]


def timed_run(args: list[str], output: Path) -> tuple[float, list[dict], str]:
    start = time.perf_counter()
    done = subprocess.run(attnzoo_command() + args + ["--output", str(output), "--format", "csv"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader(output.open(newline=""))) if output.exists() else []
    if done.returncode not in (0, 1):  # 1: some row failed, which the rows say
        print(done.stderr.strip()[-2000:], file=sys.stderr)
        raise SystemExit(f"attnzoo {' '.join(args)} exited {done.returncode}")
    return seconds, rows, done.stderr


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=1, help="interleaved pairs of runs [default: 1]")
    p.add_argument("--compile-blocks", default="se,cbam,mha,sdpa",
                   help="blocks timed under --compile for the campaign estimate ('' to skip)")
    p.add_argument("--workers", type=int, default=8, help="workers (GPUs) of the campaign on paper [default: 8]")
    args = p.parse_args(argv)
    info = print_header("ray_overhead: profile --all --mode infer, plain against --ray on one node")
    folder = Path(tempfile.mkdtemp(prefix="attnzoo-ray-bench-"))
    results = []
    for i in range(args.rounds):
        order = ["plain", "ray"] if i % 2 == 0 else ["ray", "plain"]
        got = {}
        for kind in order:
            extra = ["--ray"] if kind == "ray" else []
            got[kind] = timed_run(PROFILE + extra, folder / f"{kind}{i}.csv")
        plain, ray = got["plain"], got["ray"]
        same = ([r["unit_id"] for r in plain[1]] == [r["unit_id"] for r in ray[1]]
                and [r["macs"] for r in plain[1]] == [r["macs"] for r in ray[1]])
        results.append({"round": i + 1, "units": len(plain[1]), "plain_s": round(plain[0], 1),
                        "ray_s": round(ray[0], 1), "ratio": round(ray[0] / plain[0], 3), "same_units_and_macs": same})
    print_table(results, ["round", "units", "plain_s", "ray_s", "ratio", "same_units_and_macs"])
    ratio = statistics.median(r["ratio"] for r in results)
    met = ratio <= TARGET and all(r["same_units_and_macs"] for r in results)
    print(f"Ray / plain wall time: {ratio:.3f}x (target <= {TARGET}x): {'met' if met else 'NOT met'}")

    per_unit_eager = statistics.median(r["plain_s"] / r["units"] for r in results)
    estimate = None
    if args.compile_blocks:
        blocks = args.compile_blocks.split(",")
        seconds, rows, _ = timed_run(["profile", *blocks, "--shape", SHAPE, "--mode", "infer", "--compile"],
                                     folder / "compiled.csv")
        per_unit_compiled = seconds / max(len(rows), 1)
        compile_s = statistics.median(float(r["compile_s"]) for r in rows if r.get("compile_s"))
        units = results[0]["units"] * 4  # every block x 4 shapes, eager and compiled
        total = units * (per_unit_eager + per_unit_compiled)
        estimate = {"blocks": results[0]["units"], "shapes": 4, "units": 2 * units,
                    "eager_s_per_unit": round(per_unit_eager, 2), "compiled_s_per_unit": round(per_unit_compiled, 2),
                    "compile_s_median": round(compile_s, 2), "one_worker_h": round(total / 3600, 2),
                    "workers": args.workers, "campaign_h": round(total / args.workers / 3600, 2)}
        print_table([estimate], list(estimate))
        print(f"on paper: {estimate['units']} units take {estimate['one_worker_h']} h on one worker like this one, "
              f"{estimate['campaign_h']} h on {args.workers} (per-unit wall times measured above, on {info['device']})")
    payload = {"benchmark": "ray_overhead", "machine": info, "command": "attnzoo " + " ".join(PROFILE),
               "rounds": results, "ratio": ratio, "target": TARGET, "met": met, "campaign_estimate": estimate}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
