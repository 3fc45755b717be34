"""`attnzoo report`: one self-contained page; sorted, filtered and photographed in a real headless Chromium.

The browser test needs Chromium (Debian's `chromium`; .ci/run installs it). Without one it is skipped on a
workstation and FAILS under CI (CI=true), so a CI run never passes without having opened the page.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from attnzoo.cli import run
from attnzoo.registry import get_spec
from attnzoo.results.report import build_report, sweep_axis
from tests.test_compare import OLD_COLUMNS, row, write_csv

#: Blocks of four families, with forward times in an order unlike the file's (inputs, not measurements).
PROFILE = [row("se", fwd=0.3), row("cbam", fwd=0.9), row("mha", fwd=2.5), row("external-attention", fwd=0.6),
           row("sdpa", fwd=1.7), row("location-attention", fwd=0.2)]
SWEEP = [row(block, shape=f"1,32,{hw},{hw}", fwd=scale * hw * hw / 64, fwd_peak_mib=scale * hw / 8, macs=int(scale * 1000 * hw ** 4))
         for block, scale in (("mha", 1.0), ("external-attention", 0.5)) for hw in (8, 16, 32)]


@pytest.fixture
def results(tmp_path):
    new_columns = dict(mode="infer", overrides="", device_name="Test CPU 9000", cuda_version="",
                       attnzoo_version="0.2.0", compile="", amp=False, channels_last=False,
                       timestamp="2026-11-23T10:00:00+00:00")
    profile = write_csv(tmp_path / "zoo.csv", [{**r, **new_columns} for r in PROFILE])
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(SWEEP))
    old = write_csv(tmp_path / "old.csv", [row("se", fwd=0.4)], OLD_COLUMNS)
    return profile, str(sweep), old


def test_the_page_is_self_contained(results):
    page = build_report(results)
    assert "<script>" in page and "<style>" in page
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=\"(?!data:)", page), "a resource is not inline"
    assert "@import" not in page and "url(" not in page
    assert page.count('src="data:image/png;base64,') == 1  # the one sweep file, plotted


def test_blocks_link_to_their_paper_and_families_fill_the_filter(results):
    page = build_report(results)
    for name in ("se", "mha", "location-attention"):
        spec = get_spec(name)
        assert f'<a href="{spec.url}"' in page
        assert f'<option value="{spec.family}">' in page
    assert "Test CPU 9000" in page                    # the environment section
    assert page.count('<tr data-family=') == len(PROFILE) + len(SWEEP) + 1


def test_an_unknown_block_has_no_link_but_is_listed(tmp_path):
    path = write_csv(tmp_path / "mine.csv", [row("my-block")])
    page = build_report([path])
    assert 'data-name="my-block"' in page and "my-block</a>" not in page


@pytest.mark.parametrize("shapes, axis", [
    (["1,32,8,8", "1,32,16,16"], "hw"), (["1,16,8,8", "1,32,8,8"], "channels"), (["1,16,8,8", "4,16,8,8"], "batch"),
    (["1,64,32"], None), (["1,16,8,8", "2,32,8,8"], None), (["1,64,32", "1,256,32"], "hw"),
])
def test_sweep_axis(shapes, axis):
    assert sweep_axis([row(shape=s) for s in shapes]) == axis


def test_cli_writes_the_page_and_checks_the_path_first(results, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert run(["report", *results, "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert run(["report", *results, "--out", str(tmp_path / "report.pdf")]) == 2
    assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "report.pdf").exists()


def test_report_does_not_import_torch(results, tmp_path):
    code = (f"import sys; from attnzoo.cli import run; code = run(['report', *{list(results)!r}, '--out', "
            f"{str(tmp_path / 'r.html')!r}]); sys.exit(3 if 'torch' in sys.modules else code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


VISIBLE = "Array.from(document.querySelectorAll('#results tbody tr')).filter(r => !r.hidden).map(r => r.dataset.name)"


def test_in_chromium_sort_filter_and_screenshot(results, tmp_path, browser):
    page = tmp_path / "report.html"
    assert run(["report", results[0], results[1], "--out", str(page)]) == 0
    browser.open(page.as_uri())
    headers = browser.evaluate("Array.from(document.querySelectorAll('#results th')).map(h => h.textContent)")
    before = browser.evaluate(VISIBLE)
    assert before == [r["block"] for r in PROFILE + SWEEP]

    column = headers.index("fwd_ms") + 1
    browser.click(f"#results th:nth-child({column})")  # a real mouse click on the header
    ascending = browser.evaluate(VISIBLE)
    expected = [r["block"] for r in sorted(PROFILE + SWEEP, key=lambda r: r["fwd_ms"])]
    assert ascending == expected and ascending != before
    shown = browser.evaluate(f"Array.from(document.querySelectorAll('#results tbody tr td:nth-child({column})'))"
                             ".map(td => parseFloat(td.dataset.v))")
    assert shown == sorted(shown)
    browser.click(f"#results th:nth-child({column})")
    assert browser.evaluate(VISIBLE) == [r["block"] for r in sorted(PROFILE + SWEEP, key=lambda r: -r["fwd_ms"])]

    browser.click("#filter")
    browser.type("att")
    assert sorted(browser.evaluate(VISIBLE)) == sorted(r["block"] for r in PROFILE + SWEEP if "att" in r["block"])
    assert browser.evaluate("document.getElementById('count').textContent") == f"5 of {len(PROFILE + SWEEP)} rows"

    browser.evaluate("(function () { var s = document.getElementById('family'); s.value = 'external';"
                     "s.dispatchEvent(new Event('change')); })()")
    assert browser.evaluate(VISIBLE) == ["external-attention"] * 4  # external family and 'att' in the name

    data = browser.screenshot(tmp_path / "report.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert browser.evaluate("document.querySelector('figure img').naturalWidth") > 500  # the inline plot decoded
