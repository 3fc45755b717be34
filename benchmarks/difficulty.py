"""Choose the difficulty of the synthetic images: the level at which the plain cnn's minimum test loss under
a protocol (default: the first article's, 50 epochs on 4000 training and 1000 test images, Adam 1e-4) lands
on the article's 0.054 on STL10.

Trains ``--block`` (default cnn) at each level of ``--levels`` (``attnzoo.train.data._harden``: blown-out
white regions that hide a patch landing on them, haze, flat bright distractors, fine texture and noise, each
scaled by the level; 0 is the ``easy`` images), prints the minimum test loss of each (mean over ``--seeds``)
and the level where the log of the loss, interpolated linearly between the two levels around it, meets
``--target``. The named difficulty ``article`` in
attnzoo/train/data.py (DIFFICULTIES) holds the level this script chose; the README says under which
protocol.

    python benchmarks/difficulty.py [--levels 0,0.5,1,1.5] [--epochs 50] [--train-size 4000]
                                    [--test-size 1000] [--seeds 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)
from common import print_header, print_table, write_json

ARTICLE_CNN = 0.054  # the article's minimum test loss of the plain cnn on STL10


def crossing(levels: list[float], losses: list[float], target: float) -> float | None:
    """The level where log(loss) interpolated between neighbouring levels meets log(target), or None."""
    for (a, la), (b, lb) in zip(zip(levels, losses), zip(levels[1:], losses[1:])):
        if (la - target) * (lb - target) <= 0 and la != lb:
            t = (math.log(target) - math.log(la)) / (math.log(lb) - math.log(la))
            return round(a + t * (b - a), 3)
    return None


def main(argv=None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--levels", default="0,0.5,1,1.5")
    args.add_argument("--block", default="cnn")
    args.add_argument("--epochs", type=int, default=50)
    args.add_argument("--train-size", type=int, default=4000)
    args.add_argument("--test-size", type=int, default=1000)
    args.add_argument("--batch-size", type=int, default=32)
    args.add_argument("--seeds", type=int, default=1)
    args.add_argument("--target", type=float, default=ARTICLE_CNN)
    args.add_argument("--json", default=None)
    args.add_argument("--out", default=None, help="keep the runs (metrics.csv per epoch) in this folder")
    opts = args.parse_args(argv)
    levels = [float(v) for v in opts.levels.split(",")]

    from attnzoo.train.data import load_task
    from attnzoo.train.zoo import Protocol, TrainRun, run_one

    info = print_header(f"difficulty: {opts.block} under {opts.epochs} epochs, {opts.train_size}/{opts.test_size} "
                        f"images, batch {opts.batch_size}, {opts.seeds} seed(s), target {opts.target}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = opts.out or scratch
        for level in levels:
            started = time.perf_counter()
            data = load_task("synthetic", None, opts.train_size, opts.test_size, 0, level)
            protocol = Protocol(out=Path(folder) / f"level-{level}", epochs=opts.epochs, batch_size=opts.batch_size,
                                train_size=opts.train_size, test_size=opts.test_size, difficulty=level)
            results = [run_one(TrainRun(opts.block, seed), protocol, data) for seed in range(opts.seeds)]
            losses = [r["min_test_loss"] for r in results]
            rows.append({"level": level, "min_test_loss": round(statistics.fmean(losses), 4),
                         "spread": round(statistics.stdev(losses), 4) if len(losses) > 1 else None,
                         "last_test_loss": round(statistics.fmean(r["last_test_loss"] for r in results), 4),
                         "best_test_acc": round(statistics.fmean(r["best_test_acc"] for r in results), 4),
                         "minutes": round((time.perf_counter() - started) / 60, 1)})
            print(rows[-1], flush=True)
    print_table(rows, ["level", "min_test_loss", "spread", "last_test_loss", "best_test_acc", "minutes"])
    level = crossing([r["level"] for r in rows], [r["min_test_loss"] for r in rows], opts.target)
    print(f"level where the min test loss meets {opts.target}: {level if level is not None else 'outside the levels'}")
    if opts.json:
        write_json(opts.json, {"machine": info, "options": vars(opts), "rows": rows, "level": level})


if __name__ == "__main__":
    main()
