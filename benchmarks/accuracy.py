"""What a block buys: published ImageNet top-1 gains beside the cost of the whole network measured on this machine.

Measures, at batch 1 in inference, every network a published gain needs (``attnzoo profile --network``'s rows:
params, MACs, forward time, memory): the papers' entries of ``profiles/papers.toml`` that print a top-1 and
their table's baseline's (the block placed in torchvision's ResNet as the paper places it, and the plain
ResNet), and timm's controlled ablations of ``profiles/published/timm-imagenet.toml`` (``timm:MODEL`` at the
image size timm evaluated it at, and the plain model of the same recipe). It then joins them
(:func:`attnzoo.results.accuracy.join`) and prints the table: the gain in top-1 over the same source's
baseline beside the MACs and the time the block adds here. ``--readme`` writes ``docs/accuracy.md``, its two
charts (``docs/accuracy-time.svg``, ``docs/accuracy-macs.svg``) and the README's headline. The rows go to
``--rows`` (default ``accuracy-rows.csv``): ``attnzoo report accuracy-rows.csv`` draws the same charts.

    python benchmarks/accuracy.py [--min-time 0.1] [--rounds 3] [--threads N] [--sizes first|all] [--rows FILE] [--readme] [--json FILE] [--from-json FILE]
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import common
from common import machine_line, parser, replace_between, write_json

README = common.ROOT / "README.md"
DOC = common.ROOT / "docs" / "accuracy.md"
START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"


def plan(entries, sizes: str) -> dict[tuple[str, str], dict[str, list[str]]]:
    """The networks to measure, in groups timed together: (baseline network, shape) -> {network: the blocks to
    place in it}, the baseline first (a paper's plain network and its blocks; a timm model's plain model of the
    same recipe and the models with attention). ``sizes="first"`` keeps each timm model's smallest image size."""
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    smallest: dict[str, int] = {}
    for e in entries:
        if e["kind"] == "timm":
            smallest[e["model"]] = min(smallest.get(e["model"], e["img_size"]), e["img_size"])
    for e in entries:
        if e["gain"] is None or e.get("cost_note"):
            continue
        if e["kind"] == "timm" and sizes == "first" and e["img_size"] != smallest[e["model"]]:
            continue
        group = groups.setdefault((e["base_network"], e["shape"]), {e["base_network"]: []})
        blocks = group.setdefault(e["network"], [])
        if e["block"] != "none" and e["block"] not in blocks:
            blocks.append(e["block"])
    return groups


def measure(groups, min_time: float, threads: int | None = None, rounds: int = 1) -> list[dict[str, Any]]:
    """The network rows of ``groups``. Each group (a baseline and the networks compared with it) is measured
    ``rounds`` times in a row, and each row keeps the lowest of its rounds' forward times (each a median;
    ``fwd_iqr_ms`` is then the median round's excess over it): the plain network and the block are timed close
    together, and on a shared machine the least disturbed round is the nearest to the network's own cost
    (load only ever adds time)."""
    import statistics

    from attnzoo.api import profile_rows
    from attnzoo.profiling.runner import ProfileOptions

    options = ProfileOptions(mode="infer", min_time=min_time, warmup=2, threads=threads)
    rows = []
    for (_, shape), members in groups.items():
        start = time.perf_counter()
        repeats = [[row for network, blocks in members.items()
                    for row in profile_rows(blocks, [shape], options, networks=[network])] for _ in range(rounds)]
        for i, row in enumerate(repeats[0]):
            times = [r[i]["fwd_ms"] for r in repeats if r[i].get("fwd_ms") is not None]
            if len(times) > 1:
                row = {**row, "fwd_ms": round(min(times), 4), "fwd_iqr_ms": round(statistics.median(times) - min(times), 4)}
            rows.append(row)
            print(f"  {row['network']} + {row['block']} at {shape}: {row['status']}, {row.get('fwd_ms')} ms "
                  f"(rounds {', '.join(f'{t:.4g}' for t in times)}; {time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def headline(joined) -> dict[str, Any]:
    """The controlled ablation the README quotes: timm's resnet33ts family at 256 (one recipe, one backbone)."""
    found = {e["model"]: e for e in joined if e["kind"] == "timm" and e["img_size"] == 256 and e["gain"] is not None}
    return {m: found[m] for m in ("seresnet33ts.ra2_in1k", "eca_resnet33ts.ra2_in1k", "gcresnet33ts.ra2_in1k")
            if m in found}


def percent(entry) -> str:
    base = entry["fwd_ms"] - entry["added_fwd_ms"]
    return f"{entry['added_fwd_ms'] / base * 100:+.0f}%"


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--min-time", type=float, default=0.1, help="seconds of timing per network (default 0.1)")
    cli.add_argument("--sizes", choices=("first", "all"), default="all",
                     help="timm's models at every published image size, or the smallest only")
    cli.add_argument("--threads", type=int, default=None,
                     help="torch threads (default torch's; 1 keeps a busy shared machine's times steadier)")
    cli.add_argument("--rounds", type=int, default=3,
                     help="times each group is measured, keeping each row's lowest forward time (default 3)")
    cli.add_argument("--rows", default="accuracy-rows.csv", help="where the measured rows go (CSV)")
    cli.add_argument("--from-json", metavar="FILE", help="no measuring: the rows of an earlier run's --json FILE")
    cli.add_argument("--readme", action="store_true", help="rewrite docs/accuracy.md, its charts and the README's lines")
    args = cli.parse_args()

    from attnzoo.results.accuracy import chart_svg, join, markdown_table, published_entries

    entries = published_entries()
    if args.from_json:  # the rows of an earlier run: the docs again, nothing measured
        saved = json.loads(Path(args.from_json).read_text())
        info, seconds, rows = saved["machine"], saved["seconds"], saved["rows"]
        args.min_time, args.rounds, args.threads = saved["min_time"], saved["rounds"], saved["threads"]
    else:
        info = common.print_header("published top-1 beside the cost measured here")
        groups = plan(entries, args.sizes)
        start = time.perf_counter()
        rows = measure(groups, args.min_time, args.threads, args.rounds)
        seconds = time.perf_counter() - start
        write_rows(args.rows, rows)
    joined = [e for e in join(rows, entries) if e["gain"] is not None]
    table = markdown_table(joined)
    print(table)
    trio = headline(joined)
    summary = (f"{len(joined)} published gains joined to {len(rows)} network rows measured at batch 1 "
               f"(`--min-time {args.min_time} --rounds {args.rounds}"
               f"{f' --threads {args.threads}' if args.threads else ''}`) in {seconds:.0f} s on {machine_line(info)}")
    print(summary)
    if args.json:
        write_json(args.json, {"machine": info, "seconds": seconds, "min_time": args.min_time, "rounds": args.rounds,
                               "threads": args.threads, "rows": rows, "joined": joined})
    if not args.readme:
        return
    charts = {"added_fwd_ms": "accuracy-time.svg", "added_macs": "accuracy-macs.svg"}
    for cost, name in charts.items():
        (DOC.parent / name).write_text(chart_svg(joined, cost) + "\n", encoding="utf-8")
    DOC.write_text(
        "# What a block buys: published ImageNet top-1 beside the cost measured here\n\n"
        "Each line is a published result with its baseline in the same source: an entry of a paper's table "
        "(`profiles/papers.toml`, the block in the network the table names, against the same table's plain "
        "network) or one of timm's controlled ablations (`profiles/published/timm-imagenet.toml`: the model with "
        "its pretrained tag at the image size timm evaluated it at, against the plain model of the same recipe). "
        "The gain is the source's own top-1 minus its baseline's: absolute top-1 of different sources is not "
        "comparable (ResNet-50 is 75.20 in ECA-Net, 75.44 in CBAM, 76.38 in SGE, 80.38 with timm's a1 recipe). "
        "Params, GMACs and the forward time are those of the whole network measured here (torchvision's v1.5 "
        "ResNets for the papers, timm's models built without weights); `added` is what the block adds over "
        "the plain network. The papers' ResNets are not always attnzoo's (docs/networks.md says where they "
        "differ), so read the cost columns as this machine's cost of that block in that network. `checked` "
        "says how the published figures were checked (shared reference: a copy of the printed table, the "
        "authors' README, a secondary source). Times at batch 1 on a shared CPU are noisy: an added time "
        "near zero, or below it, is a block whose cost is within the noise.\n\n"
        f"{summary}; regenerated by `python benchmarks/accuracy.py --readme`.\n\n"
        f"{table}\n\n"
        "Top-1 gained against the forward time added on this machine (filled points on the dashed line: the "
        "Pareto front, where no other entry gains more for less):\n\n![gain against time added](accuracy-time.svg)\n\n"
        "Top-1 gained against the MACs added:\n\n![gain against MACs added](accuracy-macs.svg)\n", encoding="utf-8")
    lines = []
    if trio:
        parts = ", ".join(f"{m.split('_resnet33ts')[0].split('resnet33ts')[0]} {e['gain']:+.2f} top-1 for "
                          f"{e['added_macs'] / 1e6:+.2f} M MACs and {percent(e)} forward time" for m, e in trio.items())
        lines.append(f"On timm's controlled ablation (resnet33ts, one recipe, 256 px; timm's published top-1, cost "
                     f"measured on {info['cpu']} at batch 1, {args.threads or info['threads']} thread(s), load "
                     f"{info['load_1min']} at start: times on a shared machine are noisy): {parts}.")
    lines.append("`python benchmarks/accuracy.py --readme` measures every network a published gain needs and "
                 "writes [docs/accuracy.md](docs/accuracy.md) (table and charts); `attnzoo report "
                 "accuracy-rows.csv` draws the charts in the report.")
    replace_between(README, START, END, f"{START}\n{' '.join(lines)}\n{END}")
    print(f"wrote {DOC.relative_to(common.ROOT)}, its charts and the README's lines")


if __name__ == "__main__":
    main()
