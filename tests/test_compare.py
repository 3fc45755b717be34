"""`attnzoo compare`: pairing rows, noise-aware verdicts, unmatched rows, --fail-above, old files, no torch.

The rows here are written by hand to pin each rule (they are inputs, not measurements); one test compares
two real profile runs end to end.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from attnzoo.cli import run
from attnzoo.results.compare import compare, verdict
from attnzoo.errors import ConfigError
from attnzoo.results import load_results

OLD_COLUMNS = ["block", "shape", "status", "params", "macs", "fwd_ms", "fwd_iqr_ms", "train_ms", "train_iqr_ms",
               "fwd_peak_mib", "device", "dtype", "threads", "torch"]


def row(block="se", shape="2,64,8,8", fwd=1.0, iqr=0.01, **extra):
    base = {"block": block, "shape": shape, "status": "ok", "params": 580, "macs": 1024, "fwd_ms": fwd,
            "fwd_iqr_ms": iqr, "train_ms": None, "train_iqr_ms": None, "fwd_peak_mib": 0.5, "device": "cpu",
            "dtype": "float32", "threads": 1, "torch": "2.5.0"}
    base.update(extra)
    return base


def write_csv(path, rows, columns=None):
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


# ---- the verdict ----------------------------------------------------------------------------------------

def test_a_change_inside_the_spread_is_noise():
    assert verdict("fwd_ms", 1.0, 1.3, base_iqr=0.4, new_iqr=0.1) == "same"      # 0.3 < IQR 0.4
    assert verdict("fwd_ms", 1.0, 1.3, base_iqr=0.1, new_iqr=0.1) == "slower"
    assert verdict("fwd_ms", 1.0, 0.7, base_iqr=0.1, new_iqr=0.2) == "faster"
    assert verdict("fwd_ms", 1.0, 0.7, base_iqr=0.1, new_iqr=0.35) == "same"     # the larger IQR counts


def test_a_tiny_change_under_the_threshold_is_same_even_with_no_spread():
    assert verdict("fwd_ms", 1.0, 1.03, 0.0, 0.0) == "same"
    assert verdict("fwd_ms", 1.0, 1.03, 0.0, 0.0, threshold=0.01) == "slower"
    assert verdict("fwd_ms", 1.0, 1.06, 0.0, 0.0) == "slower"


def test_counts_are_exact_and_memory_uses_the_threshold():
    assert verdict("macs", 1000, 1001) == "more"
    assert verdict("params", 1000, 999) == "less"
    assert verdict("macs", 1000, 1000) == "same"
    assert verdict("fwd_peak_mib", 1.0, 1.02) == "same"
    assert verdict("fwd_peak_mib", 1.0, 1.5) == "more"


# ---- pairing --------------------------------------------------------------------------------------------

def test_rows_pair_on_block_and_shape_and_unmatched_rows_are_listed():
    base = [row("se", fwd=1.0), row("cbam", fwd=2.0), row("mha", fwd=3.0)]
    new = [row("se", fwd=2.0), row("cbam", fwd=2.0), row("eca", fwd=1.0)]
    result = compare(base, new, ["fwd_ms"])
    by = {(r["block"], r["verdict"]) for r in result.rows}
    assert ("se", "slower") in by and ("cbam", "same") in by
    assert ("mha", "only in base") in by and ("eca", "only in new") in by
    se = next(r for r in result.rows if r["block"] == "se")
    assert se["ratio"] == pytest.approx(2.0) and result.matched == 2


def test_a_setting_that_varies_inside_a_file_joins_the_key():
    base = [row(dtype="float32", fwd=1.0), row(dtype="float16", fwd=0.5)]
    new = [row(dtype="float16", fwd=0.5), row(dtype="float32", fwd=2.0)]
    result = compare(base, new, ["fwd_ms"])
    assert "dtype" in result.key
    verdicts = {r["dtype"]: r["verdict"] for r in result.rows}
    assert verdicts == {"float32": "slower", "float16": "same"}


def test_settings_that_differ_between_files_are_named_not_matched():
    result = compare([row(threads=1)], [row(threads=4, fwd=0.5)], ["fwd_ms"])
    assert "threads" not in result.key
    assert result.differs["threads"] == ("1", "4")
    assert result.rows[0]["verdict"] == "faster"


def test_overrides_tell_rows_apart():
    base = [row(overrides=""), row(overrides="reduction=4", fwd=5.0)]
    new = [row(overrides="", fwd=1.0), row(overrides="reduction=4", fwd=10.0)]
    verdicts = {r["overrides"]: r["verdict"] for r in compare(base, new, ["fwd_ms"]).rows}
    assert verdicts == {"": "same", "reduction=4": "slower"}


def test_duplicate_rows_ask_for_match():
    with pytest.raises(ConfigError, match="--match"):
        compare([row(), row()], [row()], ["fwd_ms"])


def test_failed_rows_are_reported_not_compared():
    result = compare([row()], [row(status="oom: out of memory in forward", fwd=None)], ["fwd_ms"])
    assert result.rows[0]["verdict"] == "failed" and "oom" in result.rows[0]["note"]


def test_default_metrics_are_those_in_both_files():
    result = compare([row()], [row()])
    assert result.metrics == ["fwd_ms", "fwd_peak_mib", "macs", "params"]  # no train_ms values in either


# ---- files and the command ------------------------------------------------------------------------------

def test_an_old_file_compares_with_a_new_one(tmp_path, capsys):
    old = write_csv(tmp_path / "old.csv", [row("se", fwd=1.0), row("cbam", fwd=1.0)], OLD_COLUMNS)
    new_rows = [row("se", fwd=1.5, mode="infer", overrides="", device_name="AMD EPYC", cuda_version="",
                    attnzoo_version="0.2.0", compile="", amp=False, channels_last=False,
                    timestamp="2026-11-23T10:00:00Z"),
                row("cbam", fwd=1.0, mode="infer", overrides="", device_name="AMD EPYC", cuda_version="",
                    attnzoo_version="0.2.0", compile="", amp=False, channels_last=False,
                    timestamp="2026-11-23T10:00:01Z")]
    new = tmp_path / "new.json"
    new.write_text(json.dumps(new_rows))
    assert load_results(new)[0]["amp"] is False
    assert run(["compare", old, str(new), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    se = next(r for r in rows if r["block"] == "se" and r["metric"] == "fwd_ms")
    assert se["verdict"] == "slower" and float(se["ratio"]) == pytest.approx(1.5)
    assert "device_name: (none) -> AMD EPYC" in err


def test_fail_above_exits_1_only_for_a_real_slowdown(tmp_path, capsys):
    base = write_csv(tmp_path / "base.csv", [row("se", fwd=1.0, iqr=0.01), row("cbam", fwd=1.0, iqr=0.5)])
    slower = write_csv(tmp_path / "new.csv", [row("se", fwd=1.2, iqr=0.01), row("cbam", fwd=1.4, iqr=0.5)])
    assert run(["compare", base, slower, "--fail-above", "1.10"]) == 1
    err = capsys.readouterr().err
    assert "se at 2,64,8,8: fwd_ms 1.2x slower" in err
    assert "cbam at" not in err  # 1.4x but inside its IQR of 0.5 ms: noise
    assert run(["compare", base, slower, "--fail-above", "1.25"]) == 0


def test_json_output_file_and_metric_choice(tmp_path, capsys):
    base = write_csv(tmp_path / "base.csv", [row(fwd=1.0)])
    new = write_csv(tmp_path / "new.csv", [row(fwd=0.5, macs=2048)])
    out = tmp_path / "diff.json"
    assert run(["compare", base, new, "--metric", "fwd_ms,macs", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["metric"], r["verdict"]) for r in rows] == [("fwd_ms", "faster"), ("macs", "more")]
    assert "fwd_ms" in capsys.readouterr().out  # the table still shows on the terminal


@pytest.mark.parametrize("args, message", [
    (["compare", "{tmp}/missing.csv", "{tmp}/base.csv"], "BASE {tmp}/missing.csv: no such file"),
    (["compare", "{tmp}/base.csv", "{tmp}/empty.csv"], "the file is empty"),
    (["compare", "{tmp}/base.csv", "{tmp}/junk.csv"], "no 'block' column"),
    (["compare", "{tmp}/base.csv", "{tmp}/bad.json"], "not valid JSON"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--metric", "speed"], "--metric speed"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--match", "colour"], "--match colour"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--fail-above", "0"], "--fail-above"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--fail-above", "0.9"], "'--fail-above'"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--fail-above", "nan"], "'--fail-above'"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--threshold", "inf"], "'--threshold'"),
    (["compare", "{tmp}/base.csv", "{tmp}/base.csv", "--output", "{tmp}/no/diff.csv"], "does not exist"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    write_csv(tmp_path / "base.csv", [row()])
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.json").write_text("[{")
    assert run([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_does_not_import_torch(tmp_path):
    base = write_csv(tmp_path / "base.csv", [row()])
    code = (f"import sys; from attnzoo.cli import run; code = run(['compare', {base!r}, {base!r}]); "
            "sys.exit(3 if 'torch' in sys.modules else code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_two_real_profile_runs_compare(tmp_path, capsys):
    fast = ["--mode", "infer", "--min-time", "0.02", "--warmup", "1"]
    for name in ("a", "b"):
        assert run(["profile", "se", "cbam", "--shape", "1,16,8,8", *fast, "--output", str(tmp_path / f"{name}.csv")]) == 0
    capsys.readouterr()
    assert run(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "-f", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["block"], r["metric"]) for r in rows} >= {("se", "fwd_ms"), ("cbam", "macs")}
    macs = [r for r in rows if r["metric"] == "macs"]
    assert all(r["verdict"] == "same" and r["ratio"] == 1 for r in macs)  # counts do not change between runs


def test_nothing_matched_is_a_failure_saying_what_each_file_holds(tmp_path, capsys):
    """Issue 31, item 6: two files with no row in common compared nothing and passed (exit 0), so a CI gate
    built on 'compare --fail-above' passed whatever changed. It exits 1 with one line naming each file's rows."""
    base = write_csv(tmp_path / "amp.csv", [row("cbam", "8,256,24,24"), row("se", "8,256,24,24")])
    new = write_csv(tmp_path / "se_eca.csv", [row("se", "2,16,8,8"), row("eca", "2,16,8,8")])
    assert run(["compare", base, new, "--fail-above", "1.1"]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no row of NEW matched" in lines[0]
    assert "amp.csv holds 2 rows (block cbam, se; shape 8,256,24,24" in lines[0]
    assert "se_eca.csv holds 2 rows (block se, eca; shape 2,16,8,8" in lines[0]
    # One matched row is a comparison again.
    assert run(["compare", base, write_csv(tmp_path / "one.csv", [row("se", "8,256,24,24")])]) == 0


def test_a_training_file_and_a_profile_file_are_different_kinds(tmp_path, capsys):
    runs = write_csv(tmp_path / "runs.csv", [{"block": "se", "seed": 0, "shape": "32,32,24,24", "status": "ok",
                                              "min_test_loss": 0.1, "test_loss_curve": "0.2 0.1"}])
    rows = write_csv(tmp_path / "rows.csv", [row()])
    for pair in ((runs, rows), (rows, runs)):
        assert run(["compare", *pair]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "different kinds of result" in err[0] and "training runs" in err[0]
