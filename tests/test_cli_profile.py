"""`attnzoo profile` on the command line: clean data on stdout, one line per problem on stderr, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from attnzoo.cli import run
from attnzoo.profiling.runner import COLUMNS

FAST = ["--device", "cpu", "--min-time", "0.01", "--warmup", "1", "--threads", "1"]
ROOT = Path(__file__).resolve().parent.parent


def test_csv_is_clean_and_loads_with_pandas(capsys):
    code = run(["profile", "se", "cbam", "--shape", "2,16,4,4", "--format", "csv", *FAST])
    out, err = capsys.readouterr()
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["block"]) == ["se", "cbam"]
    assert (frame["status"] == "ok").all()
    assert {"fwd_ms", "train_ms", "fwd_peak_mib", "train_peak_mib", "macs", "flops"} <= set(frame.columns)
    assert (frame["flops"] == 2 * frame["macs"]).all()


def test_json_loads(capsys):
    code = run(["profile", "sdpa", "--shape", "2,8,4,4", "--shape", "1,5,8", "--format", "json", "--mode", "infer",
                *FAST])
    out, _ = capsys.readouterr()
    assert code == 0
    rows = json.loads(out)
    assert [r["shape"] for r in rows] == ["2,8,4,4", "1,5,8"]
    assert rows[0]["macs"] == 2 * 2 * 16 * 16 * 8 and rows[1]["macs"] == 2 * 1 * 5 * 5 * 8
    assert rows[0]["train_ms"] is None and rows[0]["fwd_ms"] > 0
    assert set(rows[0]) == set(COLUMNS)


def test_table_and_output_file(capsys, tmp_path):
    code = run(["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", *FAST])
    out, _ = capsys.readouterr()
    assert code == 0 and "se" in out and "MACs" in out and "1 MAC = 1 multiply-add = 2 FLOPs" in out
    target = tmp_path / "rows.csv"
    code = run(["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", "-f", "csv", "-o", str(target), *FAST])
    out, err = capsys.readouterr()
    assert code == 0 and out == "" and str(target) in err
    assert len(pd.read_csv(target)) == 1


@pytest.mark.parametrize("args, expected", [
    (["mha", "--shape", "2,250,8,8"], "attnzoo: error: mha cannot take shape 2,250,8,8"),
])
def test_a_shape_the_block_cannot_take_is_refused_in_one_line_before_any_row(capsys, args, expected):
    code = run(["profile", *args, *FAST])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(expected)


def test_failed_rows_stay_in_csv_and_the_others_run(capsys):
    code = run(["profile", "mha", "--shape", "2,250,8,8", "--shape", "2,16,4,4", "-f", "csv", "--mode", "infer", *FAST])
    out, err = capsys.readouterr()
    frame = pd.read_csv(io.StringIO(out))
    assert code == 1
    assert list(frame["status"].str.split(":").str[0]) == ["error", "ok"]
    # one line for the failed row (a busy machine may add the footer's warnings about the times)
    assert len([line for line in err.splitlines() if not line.startswith("attnzoo: warning:")]) == 1


@pytest.mark.parametrize("args, expected", [
    (["cbamm", "--shape", "2,16,4,4"], "attnzoo: error: unknown block 'cbamm'; did you mean 'cbam'"),
    (["cbam", "--shape", "2,a,4,4"], "attnzoo: error: malformed shape '2,a,4,4'"),
    (["cbam", "--shape", "1,2,3"], "attnzoo: error: cbam works on feature maps"),
    (["cbam"], "attnzoo: error: no shape given"),
    ([], "attnzoo: error: name at least one block"),
    (["cbam", "--shape", "2,16,4,4", "--mode", "fast"], "attnzoo: error: mode 'fast'"),
    (["cbam", "--shape", "2,16,4,4", "--set", "reduction"], "attnzoo: error: --set expects key=value"),
    (["cbam", "--suite", "seeds"], "attnzoo: error: --suite takes its blocks"),
    (["--suite", "nope"], "attnzoo: error: no suite 'nope'"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys, args, expected):
    code = run(["profile", *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(expected)


def test_set_overrides_a_constructor_argument(capsys):
    code = run(["profile", "cbam", "--shape", "1,256,2,2", "--set", "reduction=8", "-f", "json", "--mode", "infer",
                *FAST])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert rows[0]["params"] == 8564 + 2 * 256 * 16 + 16  # hidden width 32 instead of 16


def test_wildcards_and_suite_file(capsys, tmp_path):
    suite = tmp_path / "mine.toml"
    suite.write_text('title = "mine"\n[options]\nmode = "infer"\n[[runs]]\nblocks = ["s[de]*"]\n'
                     'shapes = ["2,16,4,4"]\n')
    code = run(["profile", "--suite", str(suite), "-f", "json", "--min-time", "0.01", "--warmup", "1",
                "--threads", "1"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    names = [r["block"] for r in rows]
    assert {"sdpa", "se"} <= set(names) and names == sorted(names)
    assert all(r["train_ms"] is None for r in rows)  # the suite's mode


def test_help_explains_the_conventions(capsys):
    assert run(["profile", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for phrase in ("1 MAC and 2 FLOPs", "fwd_peak_mib", "uncounted_ops", "above the inputs and weights"):
        assert phrase in out, phrase


def test_real_process_stdout_is_only_csv(tmp_path):
    """In a real process (fvcore's import-time and trace warnings included) stdout carries only the CSV."""
    env = {**os.environ, "COLUMNS": "80"}
    command = [sys.executable, "-c", "from attnzoo.cli import main; main()",
               "profile", "mha", "--shape", "2,16,4,4", "--format", "csv", *FAST]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert frame.loc[0, "macs"] == 2 * (4 * 16 * 16 * 16 + 2 * 16 * 16 * 16)
    assert "Warning" not in result.stderr, result.stderr


def test_profile_api_and_command_do_not_import_torch_until_run():
    code = ("import sys, attnzoo, attnzoo.cli; attnzoo.profile; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---- issue 31 ---------------------------------------------------------------------------------------------


def test_an_existing_file_of_rows_is_refused_and_overwrite_clears_its_sidecars(tmp_path, capsys):
    """Issue 31, item 4: '--output FILE' replaced a 36-row sweep file with one row and left the old
    FILE.settings.json beside it. An existing file is refused in one line naming --resume and --overwrite;
    --overwrite replaces it and clears its sidecars."""
    target = tmp_path / "rows.csv"
    target.write_text("block,shape,status\nsve,1,ok\nsve,2,ok\n")
    settings = tmp_path / "rows.csv.settings.json"
    plan = tmp_path / "rows.csv.campaign.json"
    settings.write_text('{"min_time": 9}\n')
    plan.write_text('{"units": {}}\n')
    args = ["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", "-o", str(target), *FAST]
    assert run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert target.read_text().count("sve") == 2 and settings.exists() and plan.exists()

    assert run([*args, "--overwrite"]) == 0
    assert "--overwrite: replacing rows.csv, rows.csv.settings.json, rows.csv.campaign.json" in capsys.readouterr().err
    assert list(pd.read_csv(target)["block"]) == ["se"]
    assert not settings.exists() and not plan.exists()
    assert run([*args, "--overwrite", "--resume"]) == 2

    table = tmp_path / "table.txt"
    table.write_text("an earlier table")
    assert run(["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", "-o", str(table), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err and table.read_text() == "an earlier table"


def test_report_without_out_does_not_replace_an_earlier_report(tmp_path, capsys, monkeypatch):
    rows = tmp_path / "rows.csv"
    rows.write_text("block,shape,status,fwd_ms\nse,\"2,16,4,4\",ok,0.1\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").write_text("<p>an earlier report</p>")
    assert run(["report", str(rows)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "report.html exists" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "report.html").read_text() == "<p>an earlier report</p>"
    assert run(["report", str(rows), "--overwrite"]) == 0
    assert "an earlier report" not in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("args, option", [
    (["profile", "se", "--shape", "1,8,4,4", "--min-time", "inf"], "'--min-time'"),
    (["profile", "se", "--shape", "1,8,4,4", "--min-time", "nan"], "'--min-time'"),
    (["profile", "se", "--shape", "1,8,4,4", "--min-time", "0"], "'--min-time'"),
    (["sweep", "se", "--shape", "1,8,4,4", "--hw", "4,8", "--min-time", "inf"], "'--min-time'"),
    (["sweep", "se", "--shape", "1,8,4,4", "--hw", "4,8", "--max-memory", "nan"], "--max-memory"),
    (["sweep", "se", "--shape", "1,8,4,4", "--hw", "4,8", "--max-memory", "infGiB"], "--max-memory"),
    (["train", "se", "--lr", "inf"], "'--lr'"),
    (["train", "se", "--lr", "nan"], "'--lr'"),
    (["train", "--compare", "cnn,se", "--target-loss", "nan"], "'--target-loss'"),
])
def test_non_finite_option_values_are_refused_naming_the_option(args, option, capsys, tmp_path):
    """Issue 31, item 7: '--min-time inf' ran forever and '--max-memory nan' meant no limit."""
    assert run([*args, "--device", "cpu"] if args[0] != "train" else [*args, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and "min_time" not in err[0], err
    assert not (tmp_path / "t").exists()


def test_the_api_refuses_an_infinite_min_time():
    from attnzoo.errors import ConfigError
    from attnzoo.profiling.runner import ProfileOptions

    with pytest.raises(ConfigError, match="finite"):
        ProfileOptions(device="cpu", min_time=float("inf")).checked()


def _row(**extra):
    row = {"block": "se", "shape": "2,16,4,4", "status": "ok", "fwd_ms": 1.0, "fwd_iqr_ms": 0.01, "train_ms": None,
           "train_iqr_ms": None, "threads": 2, "load": 0.5, "busy": 0, "cores": 2}
    row.update(extra)
    return row


def test_stability_warnings_from_planted_rows():
    from attnzoo.profiling.load import SPREAD_LIMIT, stability_warnings

    assert stability_warnings([_row()]) == []
    crowded = stability_warnings([_row(busy=1)])
    assert len(crowded) == 1 and "busy" in crowded[0] and "--threads 1" in crowded[0] and "unstable" in crowded[0]
    assert stability_warnings([_row(busy=1, threads=1)]) == []  # one free core for one thread
    wide = stability_warnings([_row(fwd_iqr_ms=2 * SPREAD_LIMIT, threads=1)])
    assert len(wide) == 1 and "spread" in wide[0] and "--min-time" in wide[0]
    assert stability_warnings([_row(fwd_iqr_ms=SPREAD_LIMIT / 2)]) == []
    assert stability_warnings([_row(status="error: planted", busy=5)]) == []  # a failed row has no time to doubt
    assert stability_warnings([{"block": "se", "shape": "1", "status": "ok", "fwd_ms": 1.0}]) == []  # an old file


def test_a_busy_helper_process_is_counted_and_the_footer_says_so(capsys):
    """A real competitor: a child process spinning on a core (ended after at most 30 s whatever happens) is an
    other runnable task; a profile on every core then leaves fewer free cores than threads, the rows record it
    and the footer warns, suggesting --threads."""
    from attnzoo.profiling.load import other_runnable, sample_load, usable_cores

    if other_runnable() is None:
        pytest.skip("the kernel does not count runnable tasks here (/proc/stat)")
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"
    helper = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)  # started and spinning
        assert sample_load().busy >= 1
        cores = usable_cores()
        code = run(["profile", "se", "--shape", "2,16,4,4", "--mode", "infer", "--format", "json", "--device", "cpu",
                    "--min-time", "0.01", "--warmup", "1", "--threads", str(cores)])
    finally:
        helper.kill()
        helper.wait(timeout=10)
    out, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["busy"] >= 1 and row["cores"] == cores and row["threads"] == cores and row["load"] is not None
    assert "the machine was busy" in err and "may be unstable" in err and "--threads" in err
