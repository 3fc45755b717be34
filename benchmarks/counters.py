"""What other counters say: the MACs that fvcore, ptflops (both backends), thop, calflops, DeepSpeed's flops
profiler and torch's FlopCounterMode report for attention blocks at one shape and for ResNet-50 + CBAM, beside
attnzoo's count (``attnzoo profile``'s ``macs``: fvcore's graph with attnzoo's handles for matmuls, SDPA,
einsum and the rest, no operator skipped silently).

Each counter is called as its documentation shows, on the same module and input, in a process of its own
(counters patch torch's functions). A counter that fails (or is not installed) gets its reason in its cell
instead of a figure; the script prints the versions it ran. The
counters are benchmark-only dependencies: ``pip install 'attnzoo[counters]'`` (DeepSpeed with
``DS_BUILD_OPS=0`` on a machine without CUDA). ``--readme`` rewrites ``docs/counters.md``.

    python benchmarks/counters.py [--shape 1,64,28,28] [--readme] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import time
import warnings
from typing import Any, Callable

import common
from common import machine_line, parser, write_json

DOC = common.ROOT / "docs" / "counters.md"
BLOCKS = ("mha", "sdpa", "vit-attention", "swin-window-attention", "external-attention", "non-local", "cbam", "se")
NETWORK = ("resnet50", "cbam", "1,3,224,224")
COUNTERS = ("attnzoo", "fvcore", "ptflops (pytorch)", "ptflops (aten)", "thop", "calflops", "deepspeed",
            "FlopCounterMode")
PACKAGES = {"fvcore": "fvcore", "ptflops (pytorch)": "ptflops", "ptflops (aten)": "ptflops", "thop": "thop",
            "calflops": "calflops", "deepspeed": "deepspeed", "FlopCounterMode": "torch", "attnzoo": "attnzoo"}


@contextlib.contextmanager
def hushed():
    """Counters print tables and warnings of their own: keep them out of the output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def by_attnzoo(model, x) -> int:
    from attnzoo.profiling.flops import count_macs

    return count_macs(model, (x,)).macs


def by_fvcore(model, x) -> int:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (x,))  # fvcore's own handles; its "flops" are multiply-adds
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


def by_ptflops(backend: str) -> Callable[[Any, Any], int]:
    def count(model, x) -> int:
        from ptflops import get_model_complexity_info

        macs, _ = get_model_complexity_info(model, tuple(x.shape[1:]), input_constructor=lambda _: x,
                                            as_strings=False, print_per_layer_stat=False, backend=backend)
        return int(macs)
    return count


def by_thop(model, x) -> int:
    import copy

    from thop import profile

    macs, _ = profile(copy.deepcopy(model), inputs=(x,), verbose=False)  # thop leaves buffers on the model
    return int(macs)


def by_calflops(model, x) -> int:
    from calflops import calculate_flops

    _, macs, _ = calculate_flops(model=model, args=[x], print_results=False, print_detailed=False,
                                 output_as_string=False)
    return int(macs)


def by_deepspeed(model, x) -> int:
    from deepspeed.profiling.flops_profiler import get_model_profile

    _, macs, _ = get_model_profile(model=model, args=[x], print_profile=False, detailed=False, as_string=False)
    return int(macs)


def by_flop_counter(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2  # FLOPs, 2 per multiply-add


FUNCTIONS = {"attnzoo": by_attnzoo, "fvcore": by_fvcore, "ptflops (pytorch)": by_ptflops("pytorch"),
             "ptflops (aten)": by_ptflops("aten"), "thop": by_thop, "calflops": by_calflops,
             "deepspeed": by_deepspeed, "FlopCounterMode": by_flop_counter}


def version(counter: str) -> str:
    try:
        return importlib.metadata.version(PACKAGES[counter])
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def modules(shape: str):
    """(label, module, input) of every module the table counts, built the same way in every process."""
    import torch

    import attnzoo

    for name in BLOCKS:
        model, inputs = attnzoo.create(name, shape)
        yield f"{name} at {shape}", model.eval(), inputs[0]
    network, block, net_shape = NETWORK
    x = torch.randn(*(int(d) for d in net_shape.split(",")), generator=torch.Generator().manual_seed(0))
    yield f"{network} + {block} at {net_shape}", attnzoo.create_network(network, block, net_shape).eval(), x


def count_with(counter: str, shape: str, start: int = 0) -> dict[str, Any]:
    """One counter over the modules from the ``start``-th on: label -> MACs, up to and including the first it
    fails on (label -> the reason): a counter that fails half-way may leave torch's functions patched."""
    import torch

    cells: dict[str, Any] = {}
    for label, model, x in list(modules(shape))[start:]:
        try:
            with hushed(), torch.no_grad():
                cells[label] = FUNCTIONS[counter](model, x)
        except Exception as exc:  # noqa: BLE001  (a counter that cannot count this module: its reason is the cell)
            message = " ".join(str(exc).split())[:90]
            cells[label] = type(exc).__name__ + (f": {message}" if message else "")
            break
    return cells


def count_apart(counter: str, shape: str) -> dict[str, Any]:
    """:func:`count_with` in a fresh process: counters patch torch's functions (calflops, DeepSpeed, ptflops'
    pytorch backend), and one that fails half-way leaves its patches for the next to count twice."""
    import subprocess
    import sys

    labels = [label for label, _, _ in modules(shape)]
    cells: dict[str, Any] = {}
    while len(cells) < len(labels):  # a fresh process again after each failure
        done = subprocess.run([sys.executable, __file__, "--only", counter, "--start", str(len(cells)), "--shape",
                               shape], capture_output=True, text=True, env={**os.environ, "DS_ACCELERATOR": "cpu"})
        lines = done.stdout.strip().splitlines()
        if done.returncode or not lines:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1][:120]
            cells.update({label: f"the counter's process failed: {why}" for label in labels[len(cells):]})
            break
        cells.update(json.loads(lines[-1]))
    return cells


def cell(value: Any, reference: Any) -> str:
    if not isinstance(value, int):
        return f"fails: {value}"
    text = f"{value / 1e6:,.2f} M" if value >= 1e6 else f"{value:,}"
    if isinstance(reference, int) and reference:
        text += f" ({value / reference:.2f}x)"
    return text


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--shape", default="1,64,28,28", help="the blocks' input shape (default 1,64,28,28)")
    cli.add_argument("--readme", action="store_true", help="rewrite docs/counters.md")
    cli.add_argument("--only", choices=COUNTERS, help=argparse.SUPPRESS)  # one counter, in its own process
    cli.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = cli.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if args.only:
        print(json.dumps(count_with(args.only, args.shape, args.start)))
        return
    import torch

    info = common.print_header("what other counters say")
    versions = {c: version(c) for c in COUNTERS}
    versions["FlopCounterMode"] = f"torch {torch.__version__}"
    print("versions: " + ", ".join(f"{c} {v}" for c, v in versions.items()))
    start = time.perf_counter()
    by_counter = {}
    for counter in COUNTERS:
        by_counter[counter] = count_apart(counter, args.shape)
        print(f"  {counter}: {by_counter[counter]}", flush=True)
    labels = list(by_counter["attnzoo"])
    rows = [{"module": label, **{c: by_counter[c].get(label) for c in COUNTERS}} for label in labels]
    seconds = time.perf_counter() - start

    header = ("| module | " + " | ".join(f"{c} ({versions[c]})" if c != "FlopCounterMode" else
                                        f"FlopCounterMode ({versions[c]})" for c in COUNTERS) + " |")
    lines = [header, "|---|" + "---:|" * len(COUNTERS)]
    for row in rows:
        lines.append(f"| {row['module']} | " + " | ".join(
            (f"**{cell(row[c], None)}**" if c == "attnzoo" and isinstance(row[c], int)
             else cell(row[c], row["attnzoo"])) for c in COUNTERS) + " |")
    table = "\n".join(lines)
    summary = f"{len(rows)} modules counted by {len(COUNTERS)} counters in {seconds:.0f} s on {machine_line(info)}"
    print(table)
    print(summary)
    if args.json:
        write_json(args.json, {"machine": info, "versions": versions, "rows": rows})
    if args.readme:
        DOC.write_text(
            "# What other counters say\n\n"
            "The multiply-adds (MACs; 1 MAC = 2 FLOPs) each counter reports for attnzoo's blocks at one shape and for "
            "ResNet-50 with CBAM in every residual unit, beside attnzoo's own count (bold; the ratio in brackets is "
            "the counter's over attnzoo's). Each counter is called as its documentation shows on the same module "
            "and input; where one fails, its cell says why. Counters that hook modules (ptflops' pytorch backend, "
            "thop, calflops, DeepSpeed) count only the layers they know: a matmul in a forward, "
            "`scaled_dot_product_attention` or an einsum is missed without a word; fvcore traces the graph but "
            "skips the operators it has no handle for (a warning it prints, not an error); FlopCounterMode counts "
            "aten operators that have a formula. attnzoo counts every operator of the graph and names any it "
            "cannot count.\n\n"
            f"{summary}; regenerated by `python benchmarks/counters.py --readme` (`pip install "
            "'attnzoo[counters]'`; DeepSpeed with `DS_BUILD_OPS=0`).\n\n" + table + "\n", encoding="utf-8")
        print(f"wrote {DOC.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
