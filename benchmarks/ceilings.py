"""What keeping the device's ceilings on disk buys: commands timed cold (an empty cache) against warm (the
ceilings already kept), and against `python -c "import torch"`, in interleaved rounds (fresh processes).

Targets (the main-job issue): a small profile warm at most 0.6x cold and 2.5x torch's import; a refusal (a
shape the block cannot take) at most 1.6x torch's import; the README's main job warm at most 0.75x cold;
calibrating float16 on a CPU without native half arithmetic under 10 s.

    python benchmarks/ceilings.py [--rounds 3] [--skip-main-job] [--json FILE]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)
from common import parser, print_header, print_table, write_json

SMALL = ["profile", "se", "--shape", "8,64,32,32", "--mode", "infer"]
REFUSAL = ["profile", "mha", "--shape", "1,3,224,224"]
MAIN_JOB = ["profile", "cbam", "--shape", "128,256,24,24"]
HALF = ["calibrate", "--dtype", "float16", "--device", "cpu"]


def attnzoo() -> list[str]:
    beside = Path(sys.executable).with_name("attnzoo")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "attnzoo"]


def timed(command: list[str], cache: str) -> tuple[float, int]:
    env = {**os.environ, "ATTNZOO_CACHE_DIR": cache}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, done.returncode


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-main-job", action="store_true", help="do not time the README's main job (~30 s a round)")
    args = p.parse_args(argv)
    info = print_header("the device's ceilings kept on disk: cold against warm", ["cpu"])

    base = tempfile.mkdtemp(prefix="attnzoo-bench-")
    warm = os.path.join(base, "warm")
    cases = {"torch import": ([sys.executable, "-c", "import torch"], None),
             "small cold": (attnzoo() + SMALL, "cold"), "small warm": (attnzoo() + SMALL, warm),
             "refusal": (attnzoo() + REFUSAL, "cold")}
    if not args.skip_main_job:
        cases.update({"main job cold": (attnzoo() + MAIN_JOB, "cold"), "main job warm": (attnzoo() + MAIN_JOB, warm)})
    for command, cache in cases.values():  # the warm cache filled once (float32 at torch's default threads)
        if cache == warm:
            timed(command, warm)
    times: dict[str, list[float]] = {name: [] for name in cases}
    codes: dict[str, set[int]] = {name: set() for name in cases}
    for round_ in range(args.rounds):
        for name, (command, cache) in cases.items():
            folder = tempfile.mkdtemp(dir=base) if cache == "cold" else (cache or base)
            seconds, code = timed(command, folder)
            times[name].append(seconds)
            codes[name].add(code)
            if name == "refusal" and any(Path(folder).iterdir()):
                raise SystemExit("the refusal wrote ceilings: it measured something")
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in cases), flush=True)
    half_cache = tempfile.mkdtemp(dir=base)
    half_s, half_code = timed(attnzoo() + HALF, half_cache)

    median = {name: statistics.median(values) for name, values in times.items()}

    def per_round(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    rows = [
        {"figure": "small profile warm / cold", "ratio": per_round("small warm", "small cold"), "target": 0.6},
        {"figure": "small profile warm / torch import", "ratio": per_round("small warm", "torch import"),
         "target": 2.5},
        {"figure": "refusal / torch import", "ratio": per_round("refusal", "torch import"), "target": 1.6},
    ]
    if not args.skip_main_job:
        rows.append({"figure": "main job warm / cold", "ratio": per_round("main job warm", "main job cold"),
                     "target": 0.75})
    for row in rows:
        row["ok"] = row["ratio"] <= row["target"]
    rows.append({"figure": "calibrate --dtype float16 (cpu), cold: seconds", "ratio": half_s, "target": 10.0,
                 "ok": half_s < 10.0 and half_code == 0})
    print_table([{"command": n, "median_s": round(median[n], 3), "exit": ",".join(map(str, sorted(codes[n])))}
                 for n in cases])
    print_table(rows)
    payload = {"machine": info, "rounds": args.rounds, "median_s": median, "times": times, "rows": rows,
               "exits": {n: sorted(c) for n, c in codes.items()}, "half_s": half_s}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
