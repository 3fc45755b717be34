"""``report``, ``compare`` and ``merge`` on whatever attnzoo itself wrote: files of rows, campaign parts with their
plans, settings records, and the folder of ``train --compare`` (runs.csv, summary.csv, per-run metrics.csv,
figures, checkpoints). Each is read or skipped with a note naming it; a file attnzoo did not write is one line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from attnzoo.cli import run
from attnzoo.results import file_kind, result_files

TINY = ["--epochs", "1", "--train-size", "32", "--test-size", "16", "--batch-size", "16", "--dataset", "synthetic",
        "--device", "cpu"]
FAST = ["--mode", "infer", "--min-time", "0.01", "--warmup", "1", "--device", "cpu", "--threads", "1"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Path:
    """What ``train --compare cnn,se --seeds 2 --out OUT`` writes, at tiny sizes."""
    out = tmp_path_factory.mktemp("train") / "OUT"
    assert run(["train", "--compare", "cnn,se", "--seeds", "2", *TINY, "--out", str(out), "--format", "csv"]) == 0
    return out


@pytest.mark.slow
def test_every_file_of_a_train_comparison_is_recognised(comparison):
    kinds = {str(p.relative_to(comparison)): file_kind(p) for p in comparison.rglob("*") if p.is_file()}
    assert kinds["runs.csv"] == "rows" and kinds["summary.csv"] == "train-summary"
    assert kinds["runs.csv.settings.json"] == "settings"
    metrics = [k for k in kinds if k.endswith("metrics.csv")]
    assert len(metrics) == 4 and {kinds[k] for k in metrics} == {"train-metrics"}
    assert {kinds[k] for k in kinds if k.endswith(".png")} == {"figure"}
    assert {kinds[k] for k in kinds if k.endswith(".pt")} == {"checkpoint"}
    files, notes = result_files([comparison])
    assert files == [comparison / "runs.csv"]
    assert len(notes) == 1 and "summary.csv" in notes[0] and "cnn/seed-0/metrics.csv" in notes[0]
    assert "settings" not in notes[0]  # runs.csv's own settings are read with it, not skipped


@pytest.mark.slow
def test_report_of_the_folder_and_of_its_csv_files(comparison, tmp_path, capsys):
    page = tmp_path / "r.html"
    assert run(["report", str(comparison), "--out", str(page)]) == 0
    err = capsys.readouterr().err
    assert f"{comparison}: skipped" in err and "summary.csv" in err
    html = page.read_text()
    assert html.count('<section class="train"') == 1 and "4 rows from" in html

    page2 = tmp_path / "r2.html"
    assert run(["report", *sorted(str(p) for p in comparison.glob("*.csv")), "--out", str(page2)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {comparison / 'summary.csv'}: the per-block summary of a train comparison" in err
    assert f"(its rows: {comparison / 'runs.csv'})" in err
    assert page2.read_text().count('<section class="train"') == 1


@pytest.mark.slow
def test_compare_and_merge_take_the_folder(comparison, tmp_path, capsys):
    assert run(["compare", str(comparison), str(comparison / "runs.csv")]) == 0
    err = capsys.readouterr().err
    assert "4 rows matched" in err and "summary.csv" in err
    merged = tmp_path / "all.csv"
    assert run(["merge", str(merged), str(comparison), str(comparison / "summary.csv")]) == 0
    err = capsys.readouterr().err
    assert f"skipped {comparison / 'summary.csv'}" in err and "merged 4 units from 1 files" in err
    assert sorted((r["block"], r["seed"]) for r in _rows(merged)) == [("cnn", "0"), ("cnn", "1"), ("se", "0"),
                                                                     ("se", "1")]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["summary.csv", "cnn/seed-1/metrics.csv", "runs.csv.settings.json"])
def test_a_file_without_rows_alone_is_one_line_that_names_it(comparison, name, capsys):
    path = comparison / name
    assert run(["compare", str(path), str(comparison / "runs.csv")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"attnzoo: error: BASE {path}: ") and "not a file of rows" in err[0]
    assert f"its rows are in {comparison / 'runs.csv'}" in err[0]
    assert run(["report", str(path), "--out", str(comparison.parent / "never.html")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "no rows to report" in err[0] and str(path) in err[0]
    assert not (comparison.parent / "never.html").exists()


def test_campaign_parts_with_their_plans_and_settings(tmp_path, capsys):
    """Shards of a profile campaign: a folder of parts (plans beside them, read with them, no note), and the
    plan or settings file named on the command line (skipped with a note)."""
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in (1, 2):
        assert run(["profile", "se", "eca", "--shape", "1,8,4,4", *FAST, "--shard", f"{i}/2",
                    "--output", str(parts / f"zoo-{i}.csv")]) == 0
    part = parts / "zoo-1.csv"
    assert file_kind(Path(f"{part}.campaign.json")) == "plan"
    capsys.readouterr()
    page = tmp_path / "r.html"
    assert run(["report", str(parts), "--out", str(page)]) == 0
    assert "skipped" not in capsys.readouterr().err
    assert run(["report", str(part), f"{part}.campaign.json", "--out", str(page)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {part}.campaign.json: the plan of a campaign" in err and f"(its rows: {part})" in err
    merged = tmp_path / "zoo.csv"
    assert run(["merge", str(merged), *map(str, sorted(parts.iterdir()))]) == 0
    err = capsys.readouterr().err
    beside = sorted(p.name for p in parts.iterdir() if file_kind(p) != "rows")
    assert beside == ["zoo-1.csv.campaign.json", "zoo-2.csv.campaign.json"]
    assert err.count("skipped") == len(beside) and "merged 2 units from 2 files" in err
    assert sorted(r["block"] for r in _rows(merged)) == ["eca", "se"]


def test_a_file_attnzoo_did_not_write_is_still_one_line(tmp_path, capsys):
    foreign = tmp_path / "metrics.csv"  # a name attnzoo uses, but another header
    foreign.write_text("step,loss\n1,0.5\n")
    assert file_kind(foreign) == "rows"
    assert run(["report", str(foreign), "--out", str(tmp_path / "r.html")]) == 2
    err = _lines(capsys.readouterr().err)
    assert err == [f"attnzoo: error: {foreign}: not a file of attnzoo rows (no 'block' column)"]
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "notes.csv").write_text("a,b\n1,2\n")
    assert run(["compare", str(folder), str(folder)]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "notes.csv" in err[0] and "not a file of attnzoo rows" in err[0]
