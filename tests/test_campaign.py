"""Campaigns without Ray: unit ids, --shard, merge, --resume of profile, rows that say where they ran."""

from __future__ import annotations

import csv
import json
import re
import socket

import pytest

import attnzoo
import attnzoo._version
from attnzoo.campaign.shard import Shard, parse_shard
from attnzoo.campaign.units import Unit
from attnzoo.cli import run
from attnzoo.errors import ConfigError
from attnzoo.profiling import runner

FAST = ["--mode", "infer", "--min-time", "0.01", "--warmup", "1", "--threads", "1", "--device", "cpu"]
BLOCKS = ["se", "eca", "cbam", "sdpa"]
SHAPES = ["--shape", "1,16,4,4", "--shape", "1,16,6,6"]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _unit(**change):
    fields = dict(kind="profile", block="se", shape=(1, 8, 4, 4), settings={"mode": "infer", "threads": 1},
                  overrides={"reduction": 4})
    fields.update(change)
    return Unit.make(**fields)


def test_unit_id_is_stable_and_changes_with_every_setting(monkeypatch):
    unit = _unit()
    assert re.fullmatch(r"u[0-9a-f]{15}", unit.id)
    assert _unit().id == unit.id and _unit(registry=["elsewhere"]).id == unit.id  # where the card is: not a setting
    others = [_unit(shape=(1, 8, 6, 6)), _unit(block="eca"), _unit(settings={"mode": "train", "threads": 1}),
              _unit(settings={"mode": "infer", "threads": 2}), _unit(overrides={"reduction": 2}),
              _unit(network="resnet50", placement="after-bn3"), _unit(kind="train")]
    assert len({u.id for u in others} | {unit.id}) == len(others) + 1
    before = unit.id
    monkeypatch.setattr(attnzoo._version, "__version__", "9.9.9")
    assert _unit().id != before  # another attnzoo version measures other units


def test_shards_are_disjoint_cover_all_and_stay_put_when_the_grid_grows():
    units = [_unit(shape=(1, 8, h, h)) for h in range(2, 40)]
    shards = [Shard(i, 3).select(units) for i in (1, 2, 3)]
    assert sorted(u.id for s in shards for u in s) == sorted(u.id for u in units)
    assert all(len(s) > 5 for s in shards)  # the hash spreads them
    grown = units + [_unit(shape=(1, 16, h, h)) for h in range(2, 20)]
    for i, shard in enumerate(shards, start=1):
        assert {u.id for u in shard} <= {u.id for u in Shard(i, 3).select(grown)}


@pytest.mark.parametrize("text, message", [
    ("0/2", "counts from 1"), ("3/2", "counts from 1"), ("a/b", "whole number"), ("2", "expected I/N"),
    ("1/0", "at least 1"), ("auto", "no job array"),
])
def test_bad_shards_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shard(text, environ={})


def test_shards_from_job_arrays():
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert parse_shard("auto", slurm) == Shard(4, 8)
    assert parse_shard("auto", {**slurm, "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(3, 8)
    with pytest.raises(ConfigError, match="not in"):
        parse_shard("auto", {**slurm, "SLURM_ARRAY_TASK_ID": "12"})  # --array=0-30:2 has ids past the count
    assert parse_shard("auto/4", {"JOB_COMPLETION_INDEX": "0"}) == Shard(1, 4)
    with pytest.raises(ConfigError, match="auto/N"):
        parse_shard("auto", {"JOB_COMPLETION_INDEX": "0"})


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """One unsharded run and its three shards, each written to its own file."""
    folder = tmp_path_factory.mktemp("shards")
    assert run(["profile", *BLOCKS, *SHAPES, *FAST, "--output", str(folder / "whole.csv")]) == 0
    for i in (1, 2, 3):
        code = run(["profile", *BLOCKS, *SHAPES, *FAST, "--shard", f"{i}/3", "--output", str(folder / f"part{i}.csv")])
        assert code == 0
    return folder


def test_union_of_shards_is_the_unsharded_run(shards):
    whole = {r["unit_id"]: r for r in _rows(shards / "whole.csv")}
    parts = [_rows(shards / f"part{i}.csv") for i in (1, 2, 3)]
    ids = [r["unit_id"] for part in parts for r in part]
    assert len(ids) == len(set(ids)) == len(whole) == len(BLOCKS) * 2
    assert set(ids) == set(whole)
    for part in parts:
        for row in part:
            assert (row["params"], row["macs"]) == (whole[row["unit_id"]]["params"], whole[row["unit_id"]]["macs"])
            assert row["host"] == socket.gethostname() and row["threads"] == "1" and row["device"] == "cpu"
    plan = json.loads((shards / "part2.csv.campaign.json").read_text())
    assert plan["shard"] == "2/3" and set(plan["units"]) == set(whole)  # the whole plan beside each part


def test_merge_joins_the_shards(shards, tmp_path, capsys):
    out = tmp_path / "merged.json"
    assert run(["merge", str(out), *(str(shards / f"part{i}.csv") for i in (1, 2, 3))]) == 0
    merged = json.loads(out.read_text())
    whole = _rows(shards / "whole.csv")
    assert [r["unit_id"] for r in merged] == [r["unit_id"] for r in whole]  # the plan's order
    assert [r["macs"] for r in merged] == [int(r["macs"]) for r in whole]
    # compare and report read the merged file, or the folder of parts
    assert run(["compare", str(shards / "whole.csv"), str(out), "--metric", "macs"]) == 0
    assert f"{len(whole)} rows matched" in capsys.readouterr().err
    assert run(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0


def test_merge_lists_missing_units(shards, tmp_path, capsys):
    out = tmp_path / "merged.csv"
    sizes = {i: len(_rows(shards / f"part{i}.csv")) for i in (1, 2, 3)}
    left_out = max(sizes, key=sizes.get)
    assert run(["merge", str(out), *(str(shards / f"part{i}.csv") for i in sizes if i != left_out)]) == 1
    err = capsys.readouterr().err
    missing = sizes[left_out]
    assert f"missing {missing} of {len(BLOCKS) * 2} units" in err
    assert len(_rows(out)) == len(BLOCKS) * 2 - missing


def _edited(source, target, **change):
    rows = _rows(source)
    for row in rows:
        row.update(change)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


@pytest.mark.parametrize("change, message", [
    ({"dtype": "float16"}, "the same unit with other settings"),
    ({"attnzoo_version": "0.0.1"}, "different attnzoo versions"),
])
def test_merge_refuses_conflicts(shards, tmp_path, capsys, change, message):
    bad = _edited(shards / "part1.csv", tmp_path / "bad.csv", **change)
    out = tmp_path / "merged.csv"
    assert run(["merge", str(out), str(shards / "part1.csv"), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_merge_refuses_parts_of_other_campaigns(shards, tmp_path, capsys):
    other = tmp_path / "other.csv"
    assert run(["profile", "se", "--shape", "1,8,5,5", *FAST, "--shard", "1/1", "--output", str(other)]) == 0
    capsys.readouterr()
    out = tmp_path / "merged.csv"
    assert run(["merge", str(out), str(shards / "part1.csv"), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "share no unit" in err and "\n" not in err and not out.exists()


def test_merge_refuses_rows_without_unit_ids(tmp_path, capsys):
    old = tmp_path / "old.csv"
    old.write_text('block,shape,status\nse,"1,8,4,4",ok\n')
    assert run(["merge", str(tmp_path / "m.csv"), str(old)]) == 2
    assert "no unit_id" in capsys.readouterr().err


def test_interrupted_profile_resumes_each_unit_once(tmp_path, monkeypatch, capsys):
    out = tmp_path / "zoo.csv"
    args = ["profile", *BLOCKS, "--shape", "1,16,4,4", *FAST, "--output", str(out)]
    calls = []
    real = runner.profile_one

    def counting(spec, shape, options, overrides=None, calibration=None, stop_at=None):
        calls.append(spec.name)
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(spec, shape, options, overrides, calibration)

    monkeypatch.setattr(runner, "profile_one", lambda *a, **k: counting(*a, **k, stop_at=3))
    assert run(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert [r["block"] for r in _rows(out)] == BLOCKS[:2]
    calls.clear()
    monkeypatch.setattr(runner, "profile_one", counting)
    assert run(args + ["--resume"]) == 0
    assert calls == BLOCKS[2:]
    assert [r["block"] for r in _rows(out)] == BLOCKS
    # another setting is another set of units: resuming the file with it is refused
    assert run(args[:-2] + ["--min-time", "0.02", "--output", str(out), "--resume"]) == 2
    assert "not units of this run" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["profile", "se", "--shape", "1,8,4,4", "--resume"], "--output"),
    (["profile", "se", "--shape", "1,8,4,4", "--retry-failed"], "--resume"),
    (["profile", "se", "--shape", "1,8,4,4", "--shard", "1/2", "--by-module"], "--by-module"),
    (["sweep", "se", "eca", "--shape", "1,8,4,4", "--hw", "4,8", "--shard", "1/2", "--baseline", "se"], "merge"),
    (["merge", "{tmp}/out.csv", "{tmp}/none.csv"], "no such file"),
    (["merge", "{tmp}/out.txt", "{tmp}"], "unknown format"),
])
def test_bad_campaign_input_is_one_line(args, message, tmp_path, capsys):
    assert run([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_ray_to_an_address_with_no_cluster_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "zoo.csv"
    assert run(["profile", "se", "--shape", "1,8,4,4", "--ray", "127.0.0.1:9", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Ray cluster answers there" in err and "\n" not in err
    assert not out.exists()


def test_ray_missing_is_one_line(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    assert run(["profile", "se", "--shape", "1,8,4,4", "--ray"]) == 2
    assert "pip install 'attnzoo[ray]'" in capsys.readouterr().err


def test_a_bare_ray_flag_keeps_the_next_word_a_block_name():
    from attnzoo.cli.common import ray_argument

    assert ray_argument(["profile", "--ray", "cbam", "--shape", "1,8,4,4"])[1:4] == ["--ray", "local", "cbam"]
    assert ray_argument(["profile", "cbam", "--ray"])[-1] == "local"
    assert ray_argument(["profile", "cbam", "--ray", "10.0.0.1:6379"])[-1] == "10.0.0.1:6379"
    assert ray_argument(["profile", "cbam", "--ray", "auto"])[-1] == "auto"


def test_progress_counts_done_running_failed_left(capsys):
    from attnzoo.campaign.progress import CampaignProgress

    units = [_unit(shape=(1, 8, h, h)) for h in (4, 5, 6)]
    with CampaignProgress(3, every=0) as progress:
        progress.started(units[0])
        progress.started(units[1])
        progress.finished(units[0], {"status": "ok"})
        progress.finished(units[1], {"status": "error: boom"})
    assert progress.line() == "done 2/3 · running 0 · failed 1 · left 1"
    assert "attnzoo: done 1/3 · running 1 · failed 0 · left 1" in capsys.readouterr().err
