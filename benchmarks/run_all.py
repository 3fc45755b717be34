"""Run every benchmark and, with ``--readme``, rewrite the README's benchmark section from the figures.

Each script runs in its own process (attention_paths, measurement, startup, ceilings, ...), prints its figures as it
goes and leaves them as JSON; this script then prints a summary table. With ``--readme`` the part of
README.md between ``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->`` is replaced by that table,
the machine line and the command.

    python benchmarks/run_all.py [--readme] [--json FILE]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import machine_line, parser, write_json

HERE = Path(__file__).resolve().parent
README = common.ROOT / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
SCRIPTS = ("attention_paths", "measurement", "startup", "ceilings", "train_throughput")
COMMAND = "python benchmarks/run_all.py --readme"


def run_script(name: str, folder: Path, extra: list[str]) -> dict:
    out = folder / f"{name}.json"
    print(flush=True)
    done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--json", str(out), *extra])
    if done.returncode or not out.exists():
        raise SystemExit(f"benchmarks/{name}.py failed (exit {done.returncode})")
    return json.loads(out.read_text())


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def summary_rows(results: dict) -> tuple[list[list[str]], list[str]]:
    """(rows of | figure | measured | target | met |, notes on the targets not met)."""
    rows, notes = [], []
    paths = results["attention_paths"]
    for row in paths["paths"]:
        where = f"{row['block']}, {row['device']}, {row['shape']}"
        rows.append([f"fused vs explicit forward latency ({where})",
                     f"{_x(row['speedup'])} faster (medians {row['explicit_ms']:.4g} -> {row['fused_ms']:.4g} ms)",
                     ">= 1.5x", _met(row["speed_ok"])])
        rows.append([f"fused vs explicit peak memory ({where})",
                     f"{_x(row['memory_ratio'])} less ({row['explicit_mib']:.4g} -> {row['fused_mib']:.4g} MiB)",
                     ">= 3x", _met(row["memory_ok"])])
        if not row["speed_ok"] and row.get("speedup_bound"):
            notes.append(
                f"{row['block']} ({row['device']}): one head of dimension C = {row['shape'].split(',')[1]}, so "
                f"both paths are dominated by the two N^2 C matmuls (x x^T and P x): through BLAS they alone "
                f"take {row['matmul_ms']:.4g} ms of the explicit path's {row['explicit_ms']:.4g} ms, which leaves "
                f"fusion at most about {row['speedup_bound']:.2f}x to gain by removing the softmax, the scaling and "
                f"the N x N round trips through memory; the fused kernel (exact, CPU flash attention) reaches "
                f"{row['speedup']:.2f}x.")
        elif not row["speed_ok"] or not row["memory_ok"]:
            notes.append(f"{row['block']} ({row['device']}): target not met on this run; see the script's output.")
    for row in paths["vs_torch"]:
        rows.append([f"attnzoo mha / (torch.nn.MultiheadAttention + same residual + LayerNorm) ({row['device']}, "
                     f"{row['shape']})",
                     f"{_x(row['vs_torch'])} its time ({row['attnzoo_ms']:.4g} vs {row['torch_mha_ln_ms']:.4g} ms; "
                     f"torch MHA alone {row['torch_mha_alone_ms']:.4g} ms)", "<= 1.1x", _met(row["ok"])])
    measurement = results["measurement"]
    summary = measurement["summary"]
    worst = summary["worst_agreement"]
    rows.append([f"attnzoo fwd_ms / torch.utils.benchmark adaptive_autorange ({summary['blocks']} blocks, "
                 f"{measurement['shape']})",
                 f"{summary['within']} of {summary['blocks']} within 10%, worst {worst:.3f}; "
                 + ", ".join(f"{r['block']} {r['agreement']:.3f}" for r in measurement["rows"]),
                 "within 10%", _met(summary["within"] == summary["blocks"])])
    for row in measurement["rows"]:
        if not row["ok"]:
            notes.append(
                f"{row['block']} ({row['device']}): attnzoo / torch = {row['agreement']:.3f} (per-pair worst "
                f"{row['worst_pair']:.3f}); torch's own IQR / median was {row['torch_iqr_rel']:.2f} "
                + ("(adaptive_autorange never settled below 0.1), " if row["torch_iqr_rel"] > 0.1 else "")
                + "so the block's time itself varied from measurement to measurement on this machine.")
    rows.append(["wall time per measurement, summed over those blocks",
                 f"attnzoo {summary['attnzoo_wall_s']:.1f} s, torch adaptive_autorange "
                 f"{summary['torch_wall_s']:.1f} s", "", ""])
    startup = results["startup"]
    for row in startup["commands"]:
        rows.append([f"`{row['command']}` wall time (median of {row['runs']})", f"{row['median_s']:.3f} s",
                     "< 1 s", _met(row["ok"])])
    profile = startup.get("profile_all")
    if profile:
        rows.append([f"`{profile['command']}` wall time",
                     f"{profile['wall_s']:.1f} s ({profile['ok_rows']} of {profile['rows']} rows ok)", "printed", ""])
        if profile.get("device_gflops"):
            rows.append(["compute ceiling of the roofline and efficiency columns (faster of matmul and 3x3 conv, float32)",
                         f"{float(profile['device_gflops']):g} GFLOP/s", "", ""])
    kept = results["ceilings"]
    for row in kept["rows"]:
        seconds = row["figure"].endswith("seconds")
        rows.append([f"{row['figure'].removesuffix(': seconds')} (ceilings kept on disk; median of "
                     f"{kept['rounds']} interleaved rounds)" if not seconds else row["figure"].removesuffix(": seconds"),
                     f"{row['ratio']:.1f} s" if seconds else _x(row["ratio"]),
                     f"< {row['target']:g} s" if seconds else f"<= {row['target']:g}x", _met(row["ok"])])
    train = results["train_throughput"]
    summary = train["summary"]
    by_name = {r["candidate"]: r for r in train["rows"]}
    rows.append([f"`attnzoo train mha` images/s against the first article's network (4 heads, batch "
                 f"{train['batch_size']}, cpu), eager",
                 f"{_x(summary['eager_vs_article'])} ({by_name['attnzoo eager']['img_s']:.0f} vs "
                 f"{by_name['article']['img_s']:.0f} img/s)", "", ""])
    rows.append([f"the same with the best flags ({summary['best'].removeprefix('attnzoo ')})",
                 f"{_x(summary['best_vs_article'])} ({by_name[summary['best']]['img_s']:.0f} img/s)", ">= 2x",
                 _met(summary["ok"])])
    return rows, notes


def markdown(results: dict, info: dict, seconds: float) -> str:
    rows, notes = summary_rows(results)
    lines = [START, "",
             f"Measured on {machine_line(info)}; regenerated by `{COMMAND}` ({seconds / 60:.0f} min). Every "
             "figure is a ratio of two things run side by side in one run (interleaved rounds, median of "
             "per-round ratios), so a busy machine slows both sides alike. The scripts in `benchmarks/` "
             "print more detail (`--json FILE` keeps it).", "",
             "| figure | measured | target | met |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    if notes:
        lines += ["", "Targets not met, and why:", ""] + [f"- {note}" for note in notes]
    lines += ["", END]
    return "\n".join(lines)


def rewrite_readme(section: str, path: Path = README) -> None:
    if START not in path.read_text():  # first run: add the section before "## Developing"
        path.write_text(path.read_text().replace("## Developing", f"## Benchmarks\n\n{START}\n{END}\n\n## Developing", 1))
    common.replace_between(path, START, END, section)


def main(argv=None) -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--readme", action="store_true", help="rewrite README.md's benchmark section")
    args = p.parse_args(argv)
    info = common.print_header("run_all: every benchmark in benchmarks/")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        results = {name: run_script(name, Path(folder), []) for name in SCRIPTS}
    seconds = time.perf_counter() - start
    rows, notes = summary_rows(results)
    print()
    common.print_table([dict(zip(("figure", "measured", "target", "met"), row)) for row in rows],
                       title=f"summary ({seconds:.0f} s)")
    for note in notes:
        print(f"not met: {note}")
    if args.readme:
        rewrite_readme(markdown(results, info, seconds))
    write_json(args.json, {"machine": info, "seconds": seconds, "results": results})


if __name__ == "__main__":
    main()
