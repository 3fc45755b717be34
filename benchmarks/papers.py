"""The papers' cost tables against attnzoo's network rows: parameters and MACs of each published entry.

Reads the suite ``profiles/papers.toml`` (one run per table entry: the network, the block, its settings and the
paper's figures), builds every entry with ``attnzoo.networks`` as ``attnzoo profile --suite papers`` does, and
counts its parameters and MACs with the profiler's own counter (no timing: the whole table takes a few
minutes on a small CPU). Prints one line per entry: the paper's params and GFLOPs, attnzoo's, whether the
parameters match at the paper's precision, the MACs the block adds over the plain network in the paper and in attnzoo, and why a
figure differs. ``--readme`` rewrites the README's headline rows (between ``<!-- papers:start -->`` and
``<!-- papers:end -->``) and the full table in ``docs/networks.md``.

    python benchmarks/papers.py [--readme] [--json FILE]
"""

from __future__ import annotations

import time
from typing import Any

import common
from common import machine_line, parser, replace_between, write_json

README = common.ROOT / "README.md"
DOC = common.ROOT / "docs" / "networks.md"
START, END = "<!-- papers:start -->", "<!-- papers:end -->"
BINARY = 2 ** 20 / 1e6  # a "binary" M is 1.048576 decimal M

#: The README shows these entries (the full table is on docs/networks.md).
HEADLINE = [("CBAM Table 4", "resnet50", "se"), ("CBAM Table 4", "resnet50", "cbam"), ("ECA-Net Table 3", "resnet50", "eca"),
            ("SGE Table 1", "resnet50", "bam"), ("SGE Table 1", "resnet50", "sge"),
            ("SA-Net Table 1", "resnet50", "shuffle-attention"), ("Triplet attention Table 2", "resnet50", "triplet-attention"),
            ("SimAM Table 3", "resnet50", "simam"), ("Coordinate attention Table 1", "mobilenet_v2", "coord-attention"),
            ("EPSANet Table 2", "resnet50", "epsa"), ("ResNeSt Table 3", "resnet50", "split-attention"),
            ("DeiT Table 1", "vit-s", "")]


def _decimals(value: float) -> int:
    text = repr(float(value))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def count(run) -> dict[str, Any]:
    """Parameters and MACs of one suite run's network (its plain network when the run names no block)."""
    import torch

    import attnzoo
    from attnzoo.networks.build import create_network
    from attnzoo.profiling.flops import count_macs

    card = attnzoo.get_network(run.networks[0])
    spec = attnzoo.get_spec(run.blocks[0]) if run.blocks else None
    placed = create_network(card, spec, run.shapes[0], run.placement, run.stages, run.overrides)
    model = placed.model.eval()
    with torch.no_grad():
        macs = count_macs(model, placed.inputs).macs
    return {"params": sum(p.numel() for p in model.parameters()), "macs": macs, "placement": placed.placement,
            "inserted": len(placed.blocks)}


def why_macs(network: str, paper_plain: float | None, ours_plain: float) -> str:
    """Why the GFLOPs differ, from the same network's figures in the paper's table and attnzoo's."""
    if paper_plain is None:
        return ""
    ratio = paper_plain / ours_plain
    if network in ("resnet50", "resnet101") and ratio < 0.98:
        return "the paper's ResNet is Caffe's v1 (stride on the first 1x1); torchvision's is v1.5"
    if ratio > 1.003:
        return "the paper's counter also counts normalisation, activations or pooling"
    return ""


def compare(suite_runs) -> list[dict[str, Any]]:
    plain: dict[str, dict[str, Any]] = {}
    rows = []
    for run in suite_runs:
        paper = run.paper
        network = run.networks[0]
        block = run.blocks[0] if run.blocks else ""
        if network not in plain:
            plain[network] = count(type(run)(blocks=(), shapes=run.shapes, networks=run.networks))
        ours = count(run) if block else plain[network]
        scale = BINARY if paper.get("units") == "binary" else 1.0
        params_m = paper.get("params_m")
        row = {"table": paper["table"], "network": network, "block": block or "(plain)",
               "placement": ours["placement"], "paper_params_m": params_m,
               "paper_params_decimal_m": round(params_m * scale, 3) if params_m is not None else None,
               "params": ours["params"], "paper_gflops": paper["gflops"], "gmacs": round(ours["macs"] / 1e9, 3)}
        if params_m is not None:
            digits = _decimals(params_m)
            mine = round(ours["params"] / 1e6 / scale, digits)
            row["params_match"] = "exact" if abs(mine - params_m) < 10 ** -digits / 2 else f"{mine - params_m:+.{digits}f} M"
        else:
            row["params_match"] = ""
        base = paper.get("base_gflops")
        if block and base is not None:
            row["paper_added_g"] = round(paper["gflops"] - base, 3)
            row["added_g"] = round((ours["macs"] - plain[network]["macs"]) / 1e9, 3)
        # The paper's plain network against attnzoo's; without one in the table, the entry against attnzoo's same network.
        if base is not None or not block:
            reference, mine = (base if base is not None else paper["gflops"]), plain[network]["macs"]
        else:
            reference, mine = paper["gflops"], ours["macs"]
        reasons = [paper.get("why", "") or why_macs(network, reference, mine / 1e9)]
        if "added_g" in row and row["paper_added_g"] > 1.5 * row["added_g"] + 0.001:
            reasons.append("the paper's added GFLOPs count the pooling and gating too (not multiply-adds)")
        row["why"] = "; ".join(filter(None, reasons))
        rows.append(row)
    return rows


def markdown(rows, header: str) -> str:
    lines = [header, "",
             "| table | network + block | placement | paper params (M) | attnzoo params | params | paper GFLOPs "
             "| attnzoo GMACs | added G: paper / attnzoo | why they differ |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        units = " (binary)" if r["paper_params_m"] is not None and r["paper_params_decimal_m"] != r["paper_params_m"] else ""
        paper_params = "" if r["paper_params_m"] is None else f"{r['paper_params_m']}{units}"
        added = f"{r['paper_added_g']} / {r['added_g']}" if "added_g" in r else ""
        lines.append(f"| {r['table']} | `{r['network']}` + `{r['block']}` | {r['placement'] or ''} | {paper_params} "
                     f"| {r['params']:,} | {r['params_match']} | {r['paper_gflops']} | {r['gmacs']} | {added} "
                     f"| {r['why']} |")
    return "\n".join(lines)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--readme", action="store_true", help="rewrite docs/networks.md and the README's table")
    args = cli.parse_args()
    import torch

    from attnzoo.profiling.suites import load_suite

    info = common.print_header("papers' tables")
    suite = load_suite("papers")
    start = time.perf_counter()
    rows = compare(suite.runs)
    seconds = time.perf_counter() - start
    exact = sum(r["params_match"] == "exact" for r in rows)
    with_params = sum(bool(r["params_match"]) for r in rows)
    header = (f"{len(rows)} entries of the papers' tables, parameters exact in {exact} of {with_params}; attnzoo's "
              f"figures counted by torch {torch.__version__} (fvcore's count of multiply-adds, as `profile`), "
              f"regenerated by `python benchmarks/papers.py --readme` ({seconds:.0f} s on {machine_line(info)}).")
    table = markdown(rows, header)
    print(table)
    if args.json:
        write_json(args.json, {"machine": info, "rows": rows})
    if args.readme:
        DOC.write_text("# The papers' tables against attnzoo's networks\n\n"
                       "Each line is an entry of a published table (the suite `profiles/papers.toml` holds the paper's "
                       "figures as printed), beside attnzoo's count for the same network with the same block at the "
                       "paper's placement and settings. Parameters do not depend on a counter: `exact` means equal at "
                       "the paper's precision. GFLOPs in these papers are multiply-adds (attnzoo's MACs); the plain "
                       "networks differ by counter and ResNet version (see the README), so the MACs a block adds "
                       "(paper / attnzoo) are the figures to compare.\n\n" + table + "\n", encoding="utf-8")
        wanted = {(t, n, b or "(plain)") for t, n, b in HEADLINE}
        short = markdown([r for r in rows if (r["table"], r["network"], r["block"]) in wanted], header)
        replace_between(README, START, END, f"{START}\n{short}\n\nAll {len(rows)} entries, with the reasons: "
                        f"[docs/networks.md](docs/networks.md).\n{END}")
        print(f"wrote {DOC.relative_to(common.ROOT)} and the README's table")


if __name__ == "__main__":
    main()
