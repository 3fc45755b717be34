"""`attnzoo profile` on the command line: clean data on stdout, one line per problem on stderr, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
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
    assert err.count("\n") == 1


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
