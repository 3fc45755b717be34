"""`attnzoo sweep`: grids, the log-log fit, resumable files, interruption, the memory limit."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from attnzoo.cli import run
from attnzoo.errors import ConfigError
from attnzoo.profiling import runner
from attnzoo.profiling.suites import load_suite
from attnzoo.campaign.rows import RowFile, point_key
from attnzoo.growth import axis_value, extrapolate, fit_power_law, fit_rows, grid_shapes, parse_values

FAST = ["--mode", "infer", "--min-time", "0.01", "--threads", "1"]


@pytest.mark.parametrize("text, values", [("8,16,32", [8, 16, 32]), ("32,8", [8, 32]), ("8:32:8", [8, 16, 24, 32]),
                                          ("4:6", [4, 5, 6])])
def test_parse_values(text, values):
    assert parse_values(text) == values


@pytest.mark.parametrize("text", ["8", "a,b", "8:4:0", "0,8", ""])
def test_malformed_grids_are_refused(text):
    with pytest.raises(ConfigError):
        parse_values(text)


def test_grids_vary_one_axis():
    assert grid_shapes((2, 64, 8, 8), "hw", [4, 16]) == [(2, 64, 4, 4), (2, 64, 16, 16)]
    assert grid_shapes((2, 64, 8, 8), "channels", [32, 128]) == [(2, 32, 8, 8), (2, 128, 8, 8)]
    assert grid_shapes((2, 64, 8, 8), "batch", [1, 4]) == [(1, 64, 8, 8), (4, 64, 8, 8)]
    assert grid_shapes((2, 49, 512), "hw", [7, 14]) == [(2, 49, 512), (2, 196, 512)]
    assert axis_value((2, 64, 8, 6), "hw") == 48 and axis_value((2, 196, 512), "hw") == 196
    assert axis_value((2, 64, 8, 6), "channels") == 64 and axis_value((3, 64, 8, 6), "batch") == 3


def test_power_law_fit_recovers_exponents():
    xs = [64, 256, 1024, 4096]
    k, r2 = fit_power_law(xs, [3 * x ** 2 for x in xs])
    assert k == pytest.approx(2.0) and r2 == pytest.approx(1.0)
    k, _ = fit_power_law(xs, [5 * x + 0.0 for x in xs])
    assert k == pytest.approx(1.0)
    assert fit_power_law([8], [1.0]) is None
    assert extrapolate([10, 20], [1.0, 4.0], 40) == pytest.approx(16.0)
    assert extrapolate([10], [1.0], 40) is None


def test_fit_rows_uses_ok_rows_only():
    rows = [{"block": "a", "shape": f"1,8,{h},{h}", "status": "ok", "macs": h ** 4} for h in (4, 8, 16)]
    rows.append({"block": "a", "shape": "1,8,32,32", "status": "oom: out of memory", "macs": 1})
    (fit,) = fit_rows(rows, "hw", ["macs"], {"a": ("O(N^2)", 2)})
    assert fit["exponent"] == pytest.approx(2.0) and fit["points"] == 3 and fit["card_macs_exponent"] == 2


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_row_file_round_trip(tmp_path, fmt):
    path = tmp_path / f"rows.{fmt}"
    rows = RowFile(path, fmt, ["block", "shape", "status", "macs"])
    rows.start(keep_existing=False)
    rows.append({"block": "mha", "shape": "1,8,4,4", "status": "ok", "macs": 10})
    rows.append({"block": "mha", "shape": "1,8,8,8", "status": "ok", "macs": 160})
    again = RowFile(path, fmt, ["block", "shape", "status", "macs"]).load()
    assert [point_key(r) for r in again] == [("mha", "1,8,4,4"), ("mha", "1,8,8,8")]
    (tmp_path / "junk.csv").write_text("not,a\nrow,file\n")
    with pytest.raises(ConfigError, match="cannot resume"):
        RowFile(tmp_path / "junk.csv", "csv", ["block"]).load()


def test_sweep_fits_quadratic_self_attention_and_linear_external(capsys):
    code = run(["sweep", "mha", "external-attention", "--shape", "1,16,8,8", "--hw", "16,24,32", *FAST,
                "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0
    rows = json.loads(captured.out)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    b, c, s = 1, 16, 64  # external attention: S = 64 memory slots
    for row in rows:
        n = int(row["shape"].split(",")[2]) ** 2
        closed = {"mha": b * (4 * n * c * c + 2 * n * n * c),  # projections, Q K^T and the weighted sum of V
                  "external-attention": b * (2 * n * c * c + 2 * n * s * c)}  # two 1x1 convs, M_k and M_v
        assert row["macs"] == closed[row["block"]], row
    fits = fit_rows(rows, "hw", ["macs"])
    exponents = {f["block"]: f["exponent"] for f in fits}
    # Exactly linear for external attention; for mha the slope between N = 256 and 1024 of 4NC^2 + 2N^2C.
    assert exponents["external-attention"] == pytest.approx(1.0, abs=1e-3)
    assert 1.85 < exponents["mha"] < 2.0
    assert "cost ~ N^k" in captured.err  # the fit table goes to stderr when stdout carries the rows


@pytest.mark.slow
def test_issue_acceptance_command(capsys):
    code = run(["sweep", "mha", "external-attention", "--shape", "1,64,8,8", "--hw", "32,48,64,96",
                "--mode", "infer", "--min-time", "0.01", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    exponents = {f["block"]: f["exponent"] for f in fit_rows(rows, "hw", ["macs"])}
    assert exponents["mha"] >= 1.8
    assert exponents["external-attention"] == pytest.approx(1.0, abs=0.05)
    assert all(r["fwd_ms"] and r["fwd_peak_mib"] for r in rows)


def test_table_output_and_plot(tmp_path, capsys):
    plot = tmp_path / "growth.png"
    assert run(["sweep", "se", "--shape", "1,16,4,4", "--hw", "4,8", *FAST, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "cost ~ N^k" in out and "se" in out
    assert plot.stat().st_size > 10_000


def _counting_profile_one(monkeypatch, interrupt_at: int | None = None):
    calls = []
    real = runner.profile_one

    def fake(spec, shape, options, overrides=None, calibration=None):
        calls.append((spec.name, shape))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(spec, shape, options, overrides, calibration)

    monkeypatch.setattr(runner, "profile_one", fake)
    return calls


def test_interrupted_sweep_keeps_rows_and_resume_completes_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep.csv"
    args = ["sweep", "se", "cbam", "--shape", "1,16,4,4", "--hw", "4,6,8", *FAST, "--output", str(out)]
    calls = _counting_profile_one(monkeypatch, interrupt_at=4)
    assert run(args) == 130
    assert "--resume" in capsys.readouterr().err
    kept = pd.read_csv(out)
    assert len(kept) == 3 and set(kept["status"]) == {"ok"}

    monkeypatch.undo()
    calls = _counting_profile_one(monkeypatch)
    assert run(args + ["--resume"]) == 0
    assert [(name, shape[2]) for name, shape in calls] == [("cbam", 4), ("cbam", 6), ("cbam", 8)]  # nothing measured twice
    done = pd.read_csv(out)
    assert len(done) == 6 and done[["block", "shape"]].drop_duplicates().shape[0] == 6


def test_output_is_not_overwritten_without_resume(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    out.write_text("block,shape,status\nse,\"1,16,4,4\",ok\n")
    assert run(["sweep", "se", "--shape", "1,16,4,4", "--hw", "4,8", *FAST, "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert "1,16,4,4" in out.read_text()


def test_max_memory_skips_points_estimated_too_large(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    code = run(["sweep", "external-attention", "--shape", "1,64,8,8", "--hw", "16,24,32,48", *FAST,
                "--max-memory", "0.3MiB", "--output", str(out)])
    rows = json.loads(out.read_text())
    statuses = [r["status"] for r in rows]
    assert statuses[:2] == ["ok", "ok"]  # the first two points are measured: they seed the estimate
    assert all(s.startswith("skipped: estimated peak") for s in statuses[2:])
    assert code == 0


@pytest.mark.parametrize("args, message", [
    (["sweep", "mha", "--shape", "1,16,4,4"], "grid"),
    (["sweep", "mha", "--shape", "1,16,4,4", "--hw", "4,x"], "malformed grid"),
    (["sweep", "nope", "--shape", "1,16,4,4", "--hw", "4,8"], "unknown block"),
    (["sweep", "mha", "--hw", "4,8"], "--shape"),
    (["sweep", "mha", "--shape", "1,16,4,4", "--hw", "4,8", "--resume"], "--output"),
    (["sweep", "mha", "--shape", "1,16,4,4", "--hw", "4,8", "--max-memory", "lots"], "--max-memory"),
    (["sweep", "--suite", "seeds"], "not a sweep suite"),
])
def test_bad_input_is_one_line(args, message, capsys):
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_sweep_suites_expand_their_grid(tmp_path):
    suite = load_suite("self-vs-external")
    assert suite.sweep_over == "hw" and len(suite.runs[0].shapes) >= 5
    path = tmp_path / "mine.toml"
    path.write_text('[sweep]\nover = "channels"\nvalues = [8, 16]\n[[runs]]\nblocks = ["se"]\nshapes = ["1,4,4,4"]\n')
    assert load_suite(str(path)).runs[0].shapes == ("1,8,4,4", "1,16,4,4")
    path.write_text('[sweep]\nover = "depth"\nvalues = [8, 16]\n[[runs]]\nblocks = ["se"]\nshapes = ["1,4,4,4"]\n')
    with pytest.raises(ConfigError, match="sweep.over"):
        load_suite(str(path))


def test_sweep_suite_runs(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text('[options]\nmode = "infer"\nmin_time = 0.01\n[sweep]\nover = "hw"\nvalues = [4, 8]\n'
                    '[[runs]]\nblocks = ["se", "sdpa"]\nshapes = ["1,8,4,4"]\n')
    assert run(["sweep", "--suite", str(path), "--format", "csv"]) == 0
    rows = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(rows["block"]) == ["se", "se", "sdpa", "sdpa"]


@pytest.mark.slow
def test_real_ctrl_c_leaves_a_readable_file_and_resume_finishes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep.csv"
    # A child started from a background job inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: put Ctrl-C's default back, as an interactive terminal would have it.
    child = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from attnzoo.cli import main; main()")
    args = [sys.executable, "-c", child, "sweep", "se", "sdpa", "--shape",
            "1,16,4,4", "--hw", "4:40:4", "--mode", "infer", "--min-time", "0.3", "--threads", "1",
            "--output", str(out)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    kept = pd.read_csv(out)
    assert 2 <= len(kept) < 20

    finished = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    done = pd.read_csv(out)
    assert len(done) == 20 and done[["block", "shape"]].drop_duplicates().shape[0] == 20
