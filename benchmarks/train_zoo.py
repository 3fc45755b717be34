"""The README's table of what a block buys: 12 blocks (the first article's four among them) x 3 seeds on the
white-patch task, under a short protocol that a 2-core CPU finishes in minutes, then the table and the chart.

Runs ``attnzoo train --compare`` (the article's settings for its blocks: ``mha`` with 4 heads, ``cbam``
channel-only), writes docs/train-zoo.md (the whole summary), docs/train-zoo.png (minimum test loss against
the block's MACs, error bars over seeds, the Pareto front) and docs/train-zoo-curves.png, and rewrites the
README between ``<!-- train:start -->`` and ``<!-- train:end -->``. An interrupted run continues with
``--resume``; ``--no-train`` only redraws from the runs already in --out.

    python benchmarks/train_zoo.py [--out runs/readme-zoo] [--resume] [--no-train]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)
from common import ROOT, load_average, machine, machine_line, replace_between

BLOCKS = ("cnn", "mha", "conv-mha", "cbam", "se", "eca", "coord-attention", "simam", "triplet-attention",
          "external-attention", "efficient-attention", "swin-window-attention")
DEFAULT_OUT = "runs/readme-zoo"
ARTICLE_SETTINGS = ("mha.num_heads=4", "cbam.no_spatial=true")
# Shorter than the article's 50 epochs on 4000/1000 images at lr 1e-4 (hours a block on 2 cores), with a
# learning rate 20x the article's so that the blocks learn in the few hundred steps there are.
PROTOCOL = {"--seeds": "3", "--epochs": "3", "--train-size": "384", "--test-size": "192", "--batch-size": "16",
            "--lr": "2e-3", "--difficulty": "article", "--target-loss": "0.5", "--dataset": "synthetic",
            "--device": "cpu"}


def command(out: str) -> list[str]:
    args = ["train", "--compare", ",".join(BLOCKS)]
    for key, value in PROTOCOL.items():
        args += [key, value]
    for item in ARTICLE_SETTINGS:
        args += ["--set", item]
    return args + ["--out", out]


def shown_command(out: str) -> str:
    return "attnzoo " + " ".join(command(out))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    opts = parser.parse_args(argv)

    from attnzoo.cli import run
    from attnzoo.results import load_results
    from attnzoo.train_results import ARTICLE, plot_loss_curves, plot_tradeoff, summarise, with_spread

    info = machine()
    started = time.perf_counter()
    if not opts.no_train:
        code = run(command(opts.out) + (["--resume"] if opts.resume else []) + ["--format", "csv"])
        if code:
            sys.exit(code)
    minutes = (time.perf_counter() - started) / 60
    rows = load_results(Path(opts.out) / "runs.csv")
    summary = summarise(rows, ARTICLE)
    docs = ROOT / "docs"
    front = plot_tradeoff(summary, docs / "train-zoo.png", "macs", "min_test_loss",
                          title=f"{len(BLOCKS)} blocks x 3 seeds, short protocol: minimum test loss against MACs")
    plot_loss_curves(rows, docs / "train-zoo-curves.png")

    def cell(line, column):
        return with_spread(line[column], line[f"{column}_std"])

    header = ("| block | family | MACs | fwd ms | min test loss | last-epoch test loss | best test acc | "
              f"epochs to {PROTOCOL['--target-loss']} | on the front | article's min test loss |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |\n")
    ordered = sorted(summary, key=lambda s: s["min_test_loss"] if s["min_test_loss"] is not None else 9)
    short_header = ("| block | MACs | fwd ms | min test loss | best test acc | "
                    f"epochs to {PROTOCOL['--target-loss']} | on the front | "
                    "article's |\n| --- | ---: | ---: | ---: | ---: | ---: | :---: | ---: |\n")
    lines, short = [], []
    for s in ordered:
        reach = f"{s['epochs_to_target']:.2g} ({s['reached_target']})" if s["epochs_to_target"] else f"- ({s['reached_target']})"
        article = f"{s['article_min_test_loss']:.3f}" if s["article_min_test_loss"] else ""
        lines.append(f"| `{s['block']}` | {s['family']} | {s['macs']:,} | {s['fwd_ms']:.3g} | {cell(s, 'min_test_loss')} | "
                     f"{cell(s, 'last_test_loss')} | {cell(s, 'best_test_acc')} | {reach} | "
                     f"{'yes' if s['block'] in front else ''} | {article} |")
        short.append(f"| `{s['block']}` | {s['macs']:,} | {s['fwd_ms']:.3g} | {cell(s, 'min_test_loss')} | "
                     f"{cell(s, 'best_test_acc')} | {reach} | {'yes' if s['block'] in front else ''} | {article} |")
    stamp = Path(opts.out) / "measured.txt"  # how the runs were measured, kept for a later --no-train
    if not opts.no_train:
        stamp.write_text(f"Measured on {machine_line(info)}, {load_average()} at the end, in {minutes:.0f} min")
    measured = stamp.read_text().strip() if stamp.is_file() else f"Redrawn from {opts.out}/runs.csv"
    page = "\n".join([
        "# What a block buys: 12 blocks x 3 seeds on the white-patch task",
        "",
        "Regenerated by `python benchmarks/train_zoo.py`, which runs:",
        "",
        "```", shown_command(DEFAULT_OUT), "```", "",
        measured + f". MACs and forward time are the block's alone at the training shape ({PROTOCOL['--batch-size']}, "
        "32, 24, 24); "
        "losses are mean ± standard deviation over seeds 0, 1, 2; the last-epoch loss is the mean of the last "
        "epoch's; 'on the front': no other block is both cheaper in MACs and lower in minimum test loss.",
        "", header + "\n".join(lines), "",
        "![minimum test loss against MACs](train-zoo.png)", "",
        "![test loss per epoch](train-zoo-curves.png)", "",
    ])
    (docs / "train-zoo.md").write_text(page)
    print(page)
    readme = "\n".join([
        "<!-- train:start -->",
        measured + ", with `python benchmarks/train_zoo.py` (whole table: [docs/train-zoo.md](docs/train-zoo.md)):",
        "", "```", shown_command(DEFAULT_OUT), "```", "",
        short_header + "\n".join(short), "",
        "![minimum test loss against the block's MACs, 3 seeds](docs/train-zoo.png)", "",
        "<!-- train:end -->",
    ])
    replace_between(ROOT / "README.md", "<!-- train:start -->", "<!-- train:end -->", readme)


if __name__ == "__main__":
    main()
