"""Will it deploy: every block of the zoo exported and run in torch.export, ONNX Runtime and OpenVINO, checked
against eager float32 and timed beside it.

For each card at one shape (default 1,64,32,32, one thread), prepares the block as ``attnzoo profile
--runtime R`` does (``attnzoo.profiling.prepare``: the export, the runtime's session and the dynamic H/W check)
for R in torch.export, onnxruntime and openvino, measures each output's error against eager float32 with the
profiler's own measurement (``rel_err``; a runtime passes within 1e-4 relative, ``attnzoo.profiling.runtimes``)
and times the four forwards side by side in interleaved rounds (``common.side_by_side``): ORT / eager and
OpenVINO / eager are medians over rounds of the per-round ratio, robust to a busy machine.

``--readme`` writes docs/deploy.md (every block, with the reason wherever not) and the README's headline
(between ``<!-- deploy:start -->`` and ``<!-- deploy:end -->``).

    python benchmarks/deploy.py [--readme] [--shape 1,64,32,32] [--blocks se,cbam] [--rounds 5] [--json FILE]
                                [--from-json FILE]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import common
from common import machine_line, parser, replace_between, write_json

DOC = common.ROOT / "docs" / "deploy.md"
README = common.ROOT / "README.md"
START, END = "<!-- deploy:start -->", "<!-- deploy:end -->"
RUNTIMES = ("torch.export", "onnxruntime", "openvino")
LABELS = {"torch.export": "torch.export", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def measure_block(spec, shape, rounds: int) -> dict[str, Any]:
    """One block: each runtime prepared (export, session, dynamic check) and checked; the forwards timed side
    by side with eager's."""
    import torch

    from attnzoo.errors import BlockFailure
    from attnzoo.profiling.measurements import _numerics
    from attnzoo.profiling.prepare import prepare
    from attnzoo.profiling.runner import ProfileOptions, _status
    from attnzoo.profiling.runtimes import parity

    found: dict[str, Any] = {"block": spec.name, "family": spec.family}
    calls: dict[str, Any] = {}
    for runtime in ("eager", *RUNTIMES):
        options = ProfileOptions(device="cpu", mode="infer", threads=1, runtime=runtime).checked()
        try:
            prepared = prepare(spec, shape, options)
        except BlockFailure as failure:
            found[runtime] = {"status": _status(failure.error, failure.stage),
                              **(getattr(failure.error, "fields", None) or {})}
            continue
        row = {"status": "ok", **prepared.deploy_fields, **_numerics(prepared, None, {})}
        row["status"] = parity(row, options) or "ok"
        found[runtime] = row
        calls[runtime] = prepared.forward
    if "eager" in calls:
        with torch.inference_mode():
            start = time.perf_counter()
            calls["eager"]()
            once = time.perf_counter() - start
            per_round = max(1, int(0.05 / max(once, 1e-6)))  # about 50 ms of calls per forward and round
            times = common.side_by_side(calls, rounds=rounds, calls=per_round, warmup=2)
        found["eager_ms"] = times["eager"]["median_ms"]
        for runtime in RUNTIMES:
            if runtime in times:
                found[f"{runtime}_ratio"] = common.ratio(times, runtime, "eager")
    return found


def _cell(row: dict[str, Any], runtime: str) -> str:
    """A runtime's cell: ok with its error, or the reason it is not."""
    got = row.get(runtime) or {}
    if got.get("status") == "ok":
        return f"ok ({got.get('rel_err'):.0e})" if got.get("rel_err") is not None else "ok"
    return _short(got.get("status", "not run"))


def _short(text: str, limit: int = 140) -> str:
    text = str(text).removeprefix("error: ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _onnx_export(row: dict[str, Any]) -> str:
    got = row.get("onnxruntime") or {}
    if got.get("export") == "ok":
        exporter = str(got.get("exporter", ""))
        return "ok" if exporter == "dynamo" else f"ok, {_short(exporter, 160)}"
    return _short(got.get("export") or got.get("status", "not run"))


def _dynamic(row: dict[str, Any], runtime: str) -> str:
    got = row.get(runtime) or {}
    return _short(got.get("dynamic_hw") or "") if got.get("status") == "ok" else ""


def _ratio(row: dict[str, Any], runtime: str) -> str:
    value = row.get(f"{runtime}_ratio")
    return "" if value is None else f"{value:.2f}"


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def ok(runtime):
        return [r["block"] for r in rows if (r.get(runtime) or {}).get("status") == "ok"]

    exported = [r["block"] for r in rows if (r.get("onnxruntime") or {}).get("export") == "ok"]
    dynamo = [r["block"] for r in rows if (r.get("onnxruntime") or {}).get("exporter") == "dynamo"]
    ratios = {rt: [r[f"{rt}_ratio"] for r in rows if r.get(f"{rt}_ratio") is not None] for rt in RUNTIMES}
    dynamic = [r["block"] for r in rows if _dynamic(r, "onnxruntime") == "yes"]
    one_size = [r["block"] for r in rows if _dynamic(r, "onnxruntime").startswith("n/a")]
    not_dynamic = {r["block"]: _dynamic(r, "onnxruntime") for r in rows
                   if _dynamic(r, "onnxruntime") and not _dynamic(r, "onnxruntime").startswith(("yes", "n/a"))}
    return {"blocks": len(rows), "onnx_export": len(exported), "dynamo": len(dynamo), "ok": {rt: ok(rt) for rt in RUNTIMES},
            "failed": {rt: {r["block"]: _cell(r, rt) for r in rows if r["block"] not in ok(rt)} for rt in RUNTIMES},
            "median_ratio": {rt: statistics.median(v) if v else None for rt, v in ratios.items()},
            "faster": {rt: sum(v < 1 for v in ratios[rt]) for rt in RUNTIMES}, "dynamic_yes": len(dynamic),
            "one_size": len(one_size), "not_dynamic": not_dynamic,
            "torchscript": {r["block"]: str((r.get("onnxruntime") or {}).get("exporter", ""))
                            for r in rows if str((r.get("onnxruntime") or {}).get("exporter", "")).startswith("torch")}}


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "",
             "| block | family | torch.export | ONNX export | ONNX Runtime ≤ 1e-4 | OpenVINO ≤ 1e-4 "
             "| dynamic H/W (torch.export) | dynamic H/W (ONNX Runtime) | ORT / eager | OpenVINO / eager |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| `{r['block']}` | {r['family']} | {_cell(r, 'torch.export')} | {_onnx_export(r)} "
                     f"| {_cell(r, 'onnxruntime')} | {_cell(r, 'openvino')} | {_dynamic(r, 'torch.export')} "
                     f"| {_dynamic(r, 'onnxruntime')} | {_ratio(r, 'onnxruntime')} | {_ratio(r, 'openvino')} |")
    return "\n".join(lines)


def headline(found: dict[str, Any], shape: str) -> str:
    n = found["blocks"]
    te, ort, ov = (found["ok"][rt] for rt in RUNTIMES)
    failed_ov = "; ".join(f"`{block}`: {why}" for block, why in found["failed"]["openvino"].items()) or "none"
    failed_ort = "; ".join(f"`{block}`: {why}" for block, why in found["failed"]["onnxruntime"].items()) or "none"
    ratio = found["median_ratio"]
    fallback = found["torchscript"]
    why = sorted({text.split("(dynamo: ", 1)[-1].rstrip(")") for text in fallback.values()})
    taken = (f"; the TorchScript exporter takes the other {len(fallback)} "
             f"({', '.join(f'`{b}`' for b in fallback)}), which dynamo refuses: {'; '.join(why)}") if fallback else ""
    odd = "; ".join(f"`{block}` {why.removeprefix('no: ')}" for block, why in found["not_dynamic"].items())
    return (f"At {shape} (one thread): {found['onnx_export']} of {n} blocks export to ONNX, {found['dynamo']} with "
            f"`torch.onnx.export(dynamo=True)`{taken}. {len(ort)} of {n} run in ONNX Runtime within 1e-4 of eager "
            f"float32 (failing: {failed_ort}); {len(ov)} of {n} in OpenVINO (failing: {failed_ov}); {len(te)} of {n} "
            f"through torch.export. Exported with dynamic H and W, {found['dynamic_yes']} of {n} reproduce eager in "
            f"ONNX Runtime at twice the size, {found['one_size']} are built for one size (eager takes no other)"
            + (f", and {odd}" if odd else "") + ". Median forward time against eager PyTorch: ONNX Runtime "
            f"{ratio['onnxruntime']:.2f}x ({found['faster']['onnxruntime']} of {n} blocks faster), OpenVINO "
            f"{ratio['openvino']:.2f}x ({found['faster']['openvino']} faster), torch.export "
            f"{ratio['torch.export']:.2f}x.")


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--readme", action="store_true", help="rewrite docs/deploy.md and the README's headline")
    cli.add_argument("--shape", default="1,64,32,32")
    cli.add_argument("--blocks", default=None, help="only these blocks, e.g. se,cbam")
    cli.add_argument("--rounds", type=int, default=5)
    cli.add_argument("--from-json", metavar="FILE", help="write the tables from a --json FILE of an earlier run")
    args = cli.parse_args()
    import torch

    import attnzoo
    from attnzoo.build import parse_shape
    from attnzoo.profiling.runtimes import runtime_version

    torch.set_num_threads(1)
    if args.from_json:  # the figures of an earlier run, written again (the tables' wording changed)
        import json
        from pathlib import Path

        saved = json.loads(Path(args.from_json).read_text())
        info, shape, seconds, rows = saved["machine"], parse_shape(saved["shape"]), saved["seconds"], saved["rows"]
    else:
        info = common.print_header("will it deploy: torch.export, ONNX Runtime, OpenVINO")
        shape = parse_shape(args.shape)
        wanted = set(args.blocks.split(",")) if args.blocks else None
        specs = [spec for spec in attnzoo.list_blocks() if wanted is None or spec.name in wanted]
        start = time.perf_counter()
        rows = []
        for spec in specs:
            row = measure_block(spec, shape, args.rounds)
            rows.append(row)
            print(f"{spec.name}: torch.export {_cell(row, 'torch.export')} | ONNX {_onnx_export(row)} | ORT "
                  f"{_cell(row, 'onnxruntime')} x{_ratio(row, 'onnxruntime')} | OpenVINO {_cell(row, 'openvino')} "
                  f"x{_ratio(row, 'openvino')}", flush=True)
        seconds = time.perf_counter() - start
    found = summary(rows)
    versions = ", ".join(f"{LABELS[rt]} {runtime_version(rt)}" for rt in RUNTIMES[1:])
    text_shape = ",".join(map(str, shape))
    header = (f"{headline(found, text_shape)}\n\nMeasured with torch {torch.__version__}, {versions}, regenerated by "
              f"`python benchmarks/deploy.py --readme` ({seconds / 60:.0f} min on {machine_line(info)}).")
    table = markdown(rows, header)
    print(table)
    if not args.from_json:
        write_json(args.json, {"machine": info, "shape": text_shape, "seconds": seconds, "summary": found,
                               "rows": rows})
    if args.readme:
        DOC.write_text(
            "# Will it deploy: every block in torch.export, ONNX Runtime and OpenVINO\n\n"
            "Each block is built at the shape below, exported as `attnzoo profile BLOCK --runtime R` does, run in "
            "the runtime on the CPU and compared with eager PyTorch in float32 on the same inputs and weights "
            "(ok: the largest error relative to the output's scale, within 1e-4). ONNX export: "
            "`torch.onnx.export(dynamo=True)`, else the TorchScript exporter (and why dynamo refused). Dynamic "
            "H/W: exported with H and W dynamic, does it reproduce eager at twice the size (yes; specialised: "
            "the exporter fixed the size; no: why; n/a: eager itself takes one size). The times are medians over "
            "interleaved rounds of the per-round ratio runtime / eager at one thread (below 1: faster than "
            "PyTorch).\n\n" + table + "\n", encoding="utf-8")
        replace_between(README, START, END, f"{START}\n{headline(found, text_shape)} Every block: "
                        f"[docs/deploy.md](docs/deploy.md) ({seconds / 60:.0f} min to regenerate).\n{END}")
        print(f"wrote {DOC.relative_to(common.ROOT)} and the README's headline")


if __name__ == "__main__":
    main()
