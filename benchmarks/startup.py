"""Start-up and whole-registry wall time of the command line, as a user sees it (fresh processes).

`attnzoo list` and `attnzoo info cbam` read cards only and must answer well under a second (median of
``--repeats`` runs); `attnzoo profile --all --shape 2,64,32,32 --mode infer` is timed once, end to end
(start-up, the matmul reference for the efficiency column, every block's count, timing and memory).

    python benchmarks/startup.py [--repeats 5] [--skip-profile] [--json FILE]
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)
from common import parser, print_header, print_table, write_json

TARGET_S = 1.0
PROFILE_ARGS = ["profile", "--all", "--shape", "2,64,32,32", "--mode", "infer"]


def attnzoo_command() -> list[str]:
    """The attnzoo console script beside this Python (a venv's bin), else on PATH, else ``python -m``."""
    beside = Path(sys.executable).with_name("attnzoo")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("attnzoo")
    return [found] if found else [sys.executable, "-m", "attnzoo"]


def run(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(attnzoo_command() + args, capture_output=True, text=True, env=os.environ.copy())
    return time.perf_counter() - start, done


def timed(args: list[str], repeats: int) -> dict:
    run(args)  # the first run warms the file cache, as a user's second command would be
    times, codes = [], set()
    for _ in range(repeats):
        seconds, done = run(args)
        times.append(seconds)
        codes.add(done.returncode)
    median = statistics.median(times)
    return {"command": "attnzoo " + " ".join(args), "median_s": median, "min_s": min(times),
            "max_s": max(times), "runs": repeats, "exit": ",".join(map(str, sorted(codes))),
            "ok": median < TARGET_S and codes == {0}}


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="runs of list / info, median [default: 5]")
    p.add_argument("--skip-profile", action="store_true", help="do not time `profile --all`")
    args = p.parse_args(argv)
    info = print_header("startup: `attnzoo list`, `attnzoo info cbam` and `attnzoo profile --all` wall time")
    print(f"fresh processes of {' '.join(attnzoo_command())}; list / info: median of {args.repeats} runs after "
          f"one warm-up run (target < {TARGET_S:g} s)")
    rows = print_table([timed(["list"], args.repeats), timed(["info", "cbam"], args.repeats)],
                       ["command", "median_s", "min_s", "max_s", "runs", "exit", "ok"])
    profile = None
    if not args.skip_profile:
        seconds, done = run(PROFILE_ARGS + ["--format", "csv"])
        table = list(csv.DictReader(io.StringIO(done.stdout)))
        profile = {"command": "attnzoo " + " ".join(PROFILE_ARGS), "wall_s": seconds, "rows": len(table),
                   "ok_rows": sum(row.get("status") == "ok" for row in table), "exit": done.returncode,
                   "fwd_ms_sum": sum(float(row["fwd_ms"]) for row in table if row.get("fwd_ms")),
                   "device_gflops": next((row["device_gflops"] for row in table if row.get("device_gflops")),
                                         None)}
        print_table([profile], ["command", "wall_s", "rows", "ok_rows", "exit", "fwd_ms_sum", "device_gflops"])
        if done.returncode:
            print(done.stderr.strip()[-2000:], file=sys.stderr)
    payload = {"benchmark": "startup", "machine": info, "commands": rows, "profile_all": profile}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
