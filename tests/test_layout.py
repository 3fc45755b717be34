"""The house: layers that import downward only (docs/ARCHITECTURE.md), and the units and rows the layering
must leave as they were.

The ids and row values below were taken from attnzoo 0.1.0 at commit d2e794c, before the layering change
(python -c over plan_units / Unit.make / make_units / profile_one); they are what a resumed file or a merge
of parts written before the change holds, so a change that alters them breaks users' files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PINNED_IDS = {
    "profile": ["u10055785c7579b3", "ua1aaaf62afb8bc2", "uf90beaf2ef59d6c", "u9236f24afe49d79"],
    "network": ["uef66cfa4ee4aa04", "u9a22251cda9b97a", "u7eacc1ffd58e275"],
    "sweep": ["ub566ad640fbf226", "uf4b8b07f4e8e4a5"],
    "train": ["u9b4bb3a782262ac", "u8318f75e060cf31", "u1d855e3fbb98f7f", "uc12b1351ca4dd6b"],
}
# The columns of a row before the change, in order (later measurements may add columns between them).
PINNED_COLUMNS = [
    "block", "shape", "status", "network", "placement", "stages", "inserted", "params", "trainable_params", "macs",
    "flops", "uncounted_ops", "counter", "bytes_min", "bytes_eager", "compile_s", "compile_cache", "fwd_ms",
    "fwd_iqr_ms", "fwd_runs", "fwd_img_s", "fwd_peak_mib", "intensity", "bandwidth_gbs", "roofline_ms", "bound",
    "of_limit", "efficiency", "device_gflops", "train_ms", "train_iqr_ms", "train_runs", "train_img_s",
    "train_peak_mib", "added_params", "added_macs", "added_fwd_ms", "added_train_ms", "attn_macs_share",
    "attn_time_share", "mode", "overrides", "compile", "amp", "channels_last", "device", "device_name", "dtype",
    "threads", "torch", "cuda_version", "attnzoo_version", "timestamp", "unit_id", "host", "node", "device_index",
]
PINNED_ROW = {"block": "se", "shape": "2,64,8,8", "status": "ok", "params": 580, "macs": 1024, "flops": 2048,
              "bytes_min": 67856, "mode": "infer", "dtype": "float32", "threads": 1, "device": "cpu"}


def _options():
    from attnzoo.profiling.runner import ProfileOptions

    return ProfileOptions(device="cpu", mode="infer", min_time=0.01, warmup=1, threads=1).checked()


def test_unit_ids_are_those_written_before_the_layering():
    from attnzoo.profiling.runner import plan_units, unit_settings
    from attnzoo.train.zoo import Protocol, make_units
    from attnzoo.unit import Unit

    options = _options()
    found = {
        "profile": [u.id for u in plan_units(["se", "cbam"], ["1,64,8,8", "2,32,16,16"], options, {"reduction": 8})],
        "network": [u.id for u in plan_units(["se", "eca"], ["1,3,64,64"], options, networks=["resnet18"])],
        "sweep": [Unit.make("profile", "mha", (1, 64, h, h), unit_settings(options), {}).id for h in (8, 16)],
        "train": [u.id for u in make_units(["cnn", "se"], [0, 1], Protocol(out=Path("runs/x"), epochs=2,
                                                                          train_size=64, test_size=32),
                                           {"se": {"reduction": 4}})],
    }
    assert found == PINNED_IDS


def test_a_profile_row_keeps_its_columns_and_values():
    from attnzoo.campaign.executors import Local
    from attnzoo.profiling.runner import plan_units

    (unit,) = plan_units(["se"], ["2,64,8,8"], _options())
    (row,) = list(Local().run([unit]))
    columns = [c for c in row if c in PINNED_COLUMNS]
    assert columns == PINNED_COLUMNS
    assert {k: row[k] for k in PINNED_ROW} == PINNED_ROW
    assert row["unit_id"] == unit.id


def _import_cycles() -> list[list[str]]:
    """The strongly connected components (more than one module) of attnzoo's import graph, counting imports
    inside functions (grimp, the graph import-linter checks)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("attnzoo")
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (the graph is deep enough to matter)
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def test_no_module_of_attnzoo_imports_itself_through_others():
    assert _import_cycles() == []


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path, monkeypatch):
    package = tmp_path / "attnzoo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from attnzoo import b\n")
    (package / "b.py").write_text("from attnzoo import a\n")
    (package / "c.py").write_text("from attnzoo import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "attnzoo" or m.startswith("attnzoo.")]:
        monkeypatch.delitem(sys.modules, name)
    assert _import_cycles() == [["attnzoo.a", "attnzoo.b"]]


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def echo_runner(unit, context) -> dict:
    """A toy kind of unit for the test below: its row says what it was given."""
    return {"block": unit.block, "shape": unit.shape_text, "status": "ok", "word": unit.settings_dict["word"],
            "threads_given": context.threads}


def test_a_new_kind_of_unit_runs_through_the_campaign_by_registering_its_runner(tmp_path):
    from attnzoo.campaign import Campaign, Local
    from attnzoo.campaign.rows import RowFile
    from attnzoo.campaign.shard import Shard
    from attnzoo.campaign.units import RUNNERS, register_runner
    from attnzoo.unit import Unit

    register_runner("echo-test", f"{__name__}:echo_runner")
    try:
        units = [Unit.make("echo-test", name, (1, 2), {"word": name.upper()}) for name in ("a", "b", "c", "d")]
        out = tmp_path / "echo.csv"
        campaign = Campaign("echo", units, row_file=RowFile(out, "csv", ["block", "shape", "status", "word"]))
        campaign.open()
        rows = campaign.run(Local())
        assert [(r["block"], r["word"], r["unit_id"]) for r in rows] == [(u.block, u.block.upper(), u.id) for u in units]
        assert out.read_text().count("\n") == 5  # the header and a row a unit, written as they came
        parts = [Campaign("echo", units, shard=Shard(i, 2)).run(Local()) for i in (1, 2)]
        assert sorted(r["unit_id"] for part in parts for r in part) == sorted(u.id for u in units)
    finally:
        RUNNERS.pop("echo-test", None)
