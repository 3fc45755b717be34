"""Published accuracy beside measured cost: the sources in profiles/, the join to network rows, the chart.

The published figures are data (profiles/papers.toml and profiles/published/timm-imagenet.toml, checked in
shared/reference/accuracy.md); the rows here are inputs made up for the test, not measurements.
"""

from __future__ import annotations

import tomllib

import pytest

from attnzoo.cli import run
from attnzoo.results.accuracy import (chart_svg, join, markdown_table, pareto_front, plotted, published_entries,
                                      timm_entries)
from attnzoo.results.report import build_report
from attnzoo.profiling.suites import bundled_profiles_dir, load_suite
from tests.test_compare import row, write_csv

CHECKED = {"printed table", "official README", "secondary", "unverified"}
PAPERS = load_suite("papers").runs
TIMM = tomllib.loads((bundled_profiles_dir() / "published" / "timm-imagenet.toml").read_text())


def _key(run):
    return run.paper["table"], run.networks[0], run.blocks[0] if run.blocks else ""


# ---- the sources ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", PAPERS, ids=lambda r: r.note)
def test_every_papers_entry_has_a_source_and_says_how_it_was_checked(run):
    paper = run.paper
    assert paper.get("checked") in CHECKED
    assert "https://" in paper.get("source", "")
    assert "top1" in paper or paper.get("no_top1"), "an entry without a top-1 says why"
    if paper["checked"] == "unverified":
        assert "top1" not in paper  # no figure from a table nobody has seen


@pytest.mark.parametrize("run", [r for r in PAPERS if "top1" in r.paper and r.blocks], ids=lambda r: r.note)
def test_an_entry_with_a_top1_has_its_tables_baseline_where_the_table_prints_it(run):
    paper = run.paper
    assert "base_top1" in paper or paper.get("no_base"), "a block's top-1 needs its baseline's, or why not"
    plain = [r for r in PAPERS if _key(r) == (paper["table"], run.networks[0], "") and "top1" in r.paper]
    if plain:  # the table prints its plain network: the block's baseline is that row's top-1
        assert paper["base_top1"] == plain[0].paper["top1"]
    if "base_top1" in paper:
        assert 50 < paper["base_top1"] < 90 and abs(paper["top1"] - paper["base_top1"]) < 5


def test_what_the_check_found_wrong_is_fixed():
    by_key = {_key(r): r.paper for r in PAPERS}
    assert by_key[("ECA-Net Table 3", "resnet101", "eca")]["base_gflops"] == 7.34
    for block in ("", "vit-attention"):
        deit = by_key[("DeiT Table 1", "vit-s", block)]
        assert "README_revenge" in deit["gflops_source"]  # DeiT's Table 1 prints no FLOPs
    for key in [("SA-Net Table 1", "resnet50", "shuffle-attention"), ("SA-Net Table 1", "resnet50", "eca"),
                ("Coordinate attention Table 1", "mobilenet_v2", ""),
                ("Coordinate attention Table 1", "mobilenet_v2", "coord-attention")]:
        assert by_key[key]["checked"] == "unverified"


def test_timms_entries_have_a_tag_and_their_baseline_of_the_same_recipe_and_size():
    entries = TIMM["entries"]
    published = {(e["model"], e["img_size"]) for e in entries}
    assert TIMM["source"]["commit"] and TIMM["source"]["file"].startswith("https://")
    for e in entries:
        assert "." in e["model"], "a model with its pretrained tag"
        assert 0 < e["crop_pct"] <= 1 and e["params_m"] > 0 and e["img_size"] >= 160
        if e.get("base"):
            assert (e["base"], e["img_size"]) in published
            assert e["base"].split(".", 1)[1] == e["model"].split(".", 1)[1], "the same recipe (tag)"
        elif e["block"]:
            assert e.get("no_base"), "an attention model without a baseline says why"


# ---- the join ---------------------------------------------------------------------------------------------

def net_row(network, block="none", size=224, fwd=10.0, macs=4e9, params=25e6):
    return row(block, shape=f"1,3,{size},{size}", fwd=fwd, macs=int(macs), params=int(params), network=network)


def test_the_join_keeps_the_tag_and_the_image_size():
    rows = [net_row("timm:seresnet33ts", size=256, fwd=12.0, macs=4.76e9, params=19.78e6),  # measured without tag
            net_row("timm:seresnet33ts", size=288, fwd=99.0, macs=6.0e9, params=19.78e6),
            net_row("timm:resnet33ts.ra2_in1k", size=256, fwd=10.0, macs=4.73e9, params=19.68e6)]
    joined = {(e["model"], e["img_size"]): e for e in join(rows)}
    se = joined[("seresnet33ts.ra2_in1k", 256)]
    assert se["measured_network"] == "timm:seresnet33ts" and se["label"] == "seresnet33ts.ra2_in1k @256"
    assert se["fwd_ms"] == 12.0 and se["added_fwd_ms"] == pytest.approx(2.0)  # the 256 rows, not the 288 one
    assert se["added_macs"] == pytest.approx(0.03e9)
    published = {(e["model"], e["img_size"]): e["top1"] for e in TIMM["entries"]}
    assert se["gain"] == pytest.approx(published[("seresnet33ts.ra2_in1k", 256)] - published[("resnet33ts.ra2_in1k", 256)])
    at_288 = joined[("seresnet33ts.ra2_in1k", 288)]
    assert at_288["fwd_ms"] == 99.0 and at_288["added_fwd_ms"] is None  # no plain row at 288: nothing added
    assert ("eca_resnet33ts.ra2_in1k", 256) not in joined  # not measured: not joined


def test_the_join_takes_each_papers_gain_over_its_own_baseline():
    rows = [net_row("resnet50", fwd=20.0, macs=4.1e9), net_row("resnet50", "se", fwd=23.0, macs=4.11e9, params=28e6)]
    joined = [e for e in join(rows) if e["block"] == "se"]
    by_table = {e["source"]: e for e in joined}
    assert set(by_table) == {"CBAM Table 4", "ECA-Net Table 3", "SGE Table 1"}
    for table, entry in by_table.items():
        run = next(r for r in PAPERS if _key(r) == (table, "resnet50", "se"))
        assert entry["gain"] == pytest.approx(run.paper["top1"] - run.paper["base_top1"])
        assert entry["added_fwd_ms"] == pytest.approx(3.0) and entry["added_params"] == pytest.approx(3e6 - 0)
    assert "| CBAM Table 4 | resnet50 + se |" in markdown_table(joined)


def test_the_pareto_front():
    points = [(1.0, 1.0), (2.0, 0.5), (0.5, 0.2), (3.0, 2.0), (3.0, 1.5), (0.5, 0.1)]
    assert pareto_front(points) == [2, 0, 3]


def test_every_source_in_the_files_is_read():
    entries = published_entries()
    assert {e["source"] for e in entries} >= {"CBAM Table 4", "SKNet Table 2", "timm"}
    assert len([e for e in timm_entries() if e["gain"] is not None]) >= 6


# ---- the chart in the report, in a real browser ------------------------------------------------------------

def accuracy_rows():
    """Network rows of resnet50 with four blocks, and timm's resnet33ts family at 256 (made-up costs)."""
    rows = [net_row("resnet50", fwd=20.0, macs=4.1e9)]
    for block, fwd, macs in (("se", 23.0, 4.11e9), ("cbam", 27.0, 4.12e9), ("eca", 21.0, 4.1001e9), ("sk", 30.0, 4.5e9)):
        rows.append(net_row("resnet50", block, fwd=fwd, macs=macs))
    for model, fwd, macs in (("resnet33ts", 10.0, 4.73e9), ("seresnet33ts", 12.5, 4.76e9), ("eca_resnet33ts", 10.4, 4.73e9),
                             ("gcresnet33ts", 11.0, 4.76e9)):
        rows.append(net_row(f"timm:{model}.ra2_in1k", size=256, fwd=fwd, macs=macs))
    return rows


def test_the_report_has_the_charts_with_a_point_per_entry(tmp_path):
    rows = accuracy_rows()
    page = build_report([write_csv(tmp_path / "nets.csv", rows)])
    joined = join(rows)
    for cost in ("added_fwd_ms", "added_macs"):
        assert chart_svg(joined, cost).count('class="point') == len(plotted(joined, cost)) > 6
    assert page.count('<svg class="accuracy-chart"') == 2
    assert page.count('class="point') == 2 * len(plotted(joined, "added_fwd_ms"))


POINTS = ("Array.from(document.querySelectorAll('svg.accuracy-chart[data-cost=\"{cost}\"] circle.point')).map(c => {{"
          "var r = c.getBoundingClientRect(); return {{entry: c.dataset.entry, source: c.dataset.source, "
          "x: parseFloat(c.dataset.x), y: parseFloat(c.dataset.y), px: r.left + r.width / 2, "
          "py: r.top + r.height / 2, w: r.width, front: c.classList.contains('front'), stroke: c.getAttribute('stroke')}}; }})")


def test_in_chromium_the_chart_shows_its_points(tmp_path, browser):
    rows = accuracy_rows()
    page = tmp_path / "report.html"
    assert run(["report", write_csv(tmp_path / "nets.csv", rows), "--out", str(page)]) == 0
    browser.open(page.as_uri())
    joined = join(rows)
    for cost in ("added_fwd_ms", "added_macs"):
        points = browser.evaluate(POINTS.format(cost=cost))
        expected = plotted(joined, cost)
        assert sorted(p["entry"] for p in points) == sorted(e["label"] for e in expected)
        assert all(p["w"] > 4 for p in points), "every point is drawn with a size"
        by_x = sorted(points, key=lambda p: p["x"])
        assert [p["px"] for p in by_x] == sorted(p["px"] for p in points)  # further right costs more
        by_y = sorted(points, key=lambda p: p["y"])
        assert [p["py"] for p in by_y] == sorted((p["py"] for p in points), reverse=True)  # higher gains more
        front = pareto_front([(p["x"], p["y"]) for p in points])
        assert {points[i]["entry"] for i in front} == {p["entry"] for p in points if p["front"]}
        colours = {}
        for p in points:
            colours.setdefault(p["source"], set()).add(p["stroke"])
        assert len(colours) >= 3 and all(len(c) == 1 for c in colours.values())  # one colour per source
        assert len({c.pop() for c in colours.values()}) == len(colours)
    legend = browser.evaluate("document.querySelectorAll('svg.accuracy-chart')[0].textContent")
    assert "timm" in legend and "CBAM Table 4" in legend
    data = browser.screenshot(tmp_path / "accuracy.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_gain_over_another_network_is_tabled_but_not_charted():
    rows = [net_row("resnet50", fwd=20.0), net_row("resnet50", "sk", fwd=25.0, macs=3e9, params=15e6)]
    sk = next(e for e in join(rows) if e["source"] == "SKNet Table 2")
    assert "ResNeXt-50" in sk["cost_note"] and sk["gain"] is not None  # SKNet-50's gain is over ResNeXt-50
    assert plotted([sk], "added_fwd_ms") == [] and "not charted" in markdown_table([sk])
