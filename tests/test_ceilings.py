"""The device's ceilings kept on disk: measured once per machine and setting, read by later processes, keyed
by what changes them, bounded in time, survived when the cache is broken, and measured again when a row
beats them. Measurements are counted, never timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnzoo.cli import run
from attnzoo.profiling import bandwidth, ceilings, efficiency, runner
from attnzoo.profiling.runner import ProfileOptions

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--mode", "infer", "--min-time", "0.01", "--warmup", "1", "--threads", "1", "--device", "cpu"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder for the test, no ceiling in this process's memory, and the measurements
    replaced by quick fakes that count their calls (``cache.calls``); ``cache.rate`` sets what they find."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ATTNZOO_CACHE_DIR", str(folder))
    monkeypatch.setattr(runner, "_CALIBRATIONS", {})
    monkeypatch.setattr(ceilings, "_warned", set())

    class Fake:
        calls: list[tuple] = []
        rate = 1.0  # scales every ceiling

    def matmul(device, dtype):
        Fake.calls.append(("matmul", str(dtype)))
        return efficiency.MatmulPeak(str(device), str(dtype).removeprefix("torch."), _threads(), 512,
                                     2 * 512 ** 3 / (100e9 * Fake.rate))

    def conv(device, dtype):
        Fake.calls.append(("conv", str(dtype)))
        b, c, h, w = 8, 64, 32, 32
        return efficiency.ConvPeak(str(device), str(dtype).removeprefix("torch."), _threads(), (b, c, h, w),
                                   2 * b * c * c * 9 * h * w / (50e9 * Fake.rate))

    def curve(device):
        Fake.calls.append(("bandwidth",))
        gbs = 20.0 * Fake.rate
        return bandwidth.BandwidthCurve(str(device), _threads(), (1e6, 1e9), (gbs, gbs), (1e6, 1e9), (gbs, gbs))

    monkeypatch.setattr(efficiency, "measure_matmul_peak", matmul)
    monkeypatch.setattr(efficiency, "measure_conv_peak", conv)
    monkeypatch.setattr(bandwidth, "measure_bandwidth", curve)
    Fake.calls = []
    Fake.folder = folder
    return Fake


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _options(**change) -> ProfileOptions:
    return ProfileOptions(**{"device": "cpu", "mode": "infer", "threads": 1, **change}).checked()


def test_ceilings_are_measured_once_and_read_back_by_a_later_process(cache, monkeypatch):
    first = runner.calibrate(_options())
    assert sorted(cache.calls) == [("bandwidth",), ("conv", "torch.float32"), ("matmul", "torch.float32")]
    files = sorted(p.name for p in cache.folder.glob("*.json"))
    assert len(files) == 3
    monkeypatch.setattr(runner, "_CALIBRATIONS", {})  # what a new process has in memory: nothing
    again = runner.calibrate(_options())
    assert len(cache.calls) == 3  # nothing measured: read from the files
    assert again.flops_per_s == first.flops_per_s and again.measured_at == first.measured_at
    assert again.bandwidth.at(1e8) == first.bandwidth.at(1e8)


def test_a_second_command_in_a_fresh_process_measures_no_ceiling(tmp_path):
    """Two real `attnzoo profile` processes share the cache: the second rewrites no file and its row says
    the ceilings were measured when the first measured them."""
    env = {**os.environ, "ATTNZOO_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "attnzoo", "profile", "se", "--shape", "2,16,4,4", *FAST, "--format", "json"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.json")}
    assert len(files) == 3  # matmul, conv, bandwidth at 1 thread
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert second.returncode == 0, second.stderr
    assert {p: p.stat().st_mtime_ns for p in files} == files
    (row_a,), (row_b,) = json.loads(first.stdout), json.loads(second.stdout)
    assert row_a["ceilings_at"] and row_a["ceilings_at"] == row_b["ceilings_at"]


def test_keys_differ_by_threads_dtype_and_autocast(cache):
    runner.calibrate(_options())
    runner.calibrate(_options(threads=2))
    runner.calibrate(_options(dtype="bfloat16"))
    runner.calibrate(_options(amp=True))
    measured = [c for c in cache.calls if c[0] == "matmul"]
    # threads 2 measures at 2 and (the faster of) 1, which is cached already; bfloat16 once; amp reads both.
    assert measured == [("matmul", "torch.float32"), ("matmul", "torch.float32"), ("matmul", "torch.bfloat16")]
    keys = {json.dumps(r["key"], sort_keys=True) for r in ceilings.entries()}
    assert len(keys) == len(list(cache.folder.glob("*.json"))) == 3 + 3 + 2  # 1 thread, 2 threads, bf16 compute
    assert ceilings.make_key("matmul", "cpu", "float32", 1) != ceilings.make_key("matmul", "cpu", "float32", 2)
    assert ceilings.make_key("matmul", "cpu", "float32", 1) != ceilings.make_key("matmul", "cpu", "float16", 1)
    key = ceilings.make_key("conv", "cpu", "float32", 1)
    assert key["device"]["kind"] == "cpu" and key["device"]["cores"] == os.cpu_count() and key["torch"]


@pytest.mark.parametrize("damage, said", [
    ("{not json", "ignoring the cached ceilings"),
    (json.dumps({"format": 99, "key": {}, "value": {}}), "written by another attnzoo"),
    (json.dumps({"format": ceilings.FORMAT, "key": {"ceiling": "matmul", "other": "machine"}, "value": {}}),
     "not the ceilings of this machine"),
    ("another version", "kept by attnzoo 0.0.1"),
])
def test_a_corrupt_or_foreign_cache_file_costs_one_line_and_is_measured_again(cache, capsys, monkeypatch, damage,
                                                                              said):
    runner.calibrate(_options())
    target = next(cache.folder.glob("matmul-*.json"))
    if damage == "another version":
        damage = json.dumps({**json.loads(target.read_text()), "attnzoo_version": "0.0.1"})
    target.write_text(damage)
    monkeypatch.setattr(runner, "_CALIBRATIONS", {})
    found = runner.calibrate(_options())
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and "Traceback" not in err
    assert cache.calls.count(("matmul", "torch.float32")) == 2 and found.matmul.size == 512
    assert json.loads(target.read_text())["format"] == ceilings.FORMAT  # repaired


def test_an_unwritable_cache_folder_costs_one_line_and_the_run_goes_on(cache, capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ATTNZOO_CACHE_DIR", str(blocker / "cache"))
    assert runner.calibrate(_options()) is not None
    err = capsys.readouterr().err
    assert "cannot keep the device's ceilings" in err and err.count("\n") == 1
    assert run(["profile", "se", "--shape", "2,16,4,4", *FAST, "--format", "csv"]) == 0


def test_recalibrate_and_calibrate_again_measure_afresh_and_clear_forgets(cache, capsys):
    assert run(["profile", "se", "--shape", "2,16,4,4", *FAST, "--format", "csv"]) == 0
    assert len(cache.calls) == 3
    assert run(["profile", "se", "--shape", "2,16,4,4", *FAST, "--format", "csv"]) == 0
    assert len(cache.calls) == 3
    assert run(["profile", "se", "--shape", "2,16,4,4", *FAST, "--format", "csv", "--recalibrate"]) == 0
    assert len(cache.calls) == 6
    assert run(["calibrate", "--threads", "1", "--again", "--format", "json"]) == 0
    assert len(cache.calls) == 9
    capsys.readouterr()
    assert run(["calibrate", "--show", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(r["ceiling"] for r in shown) == ["bandwidth", "conv", "matmul"] and len(cache.calls) == 9
    assert shown[0]["threads"] == 1 and shown[0]["device"] == "cpu"
    assert run(["calibrate", "--clear"]) == 0
    assert "forgot 3 ceilings" in capsys.readouterr().err
    assert not list(cache.folder.glob("*.json"))
    assert run(["calibrate", "--show", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert run(["calibrate", "--show", "--threads", "2"]) == 2  # --show reads only


def test_a_row_faster_than_its_ceilings_measures_them_again_once(cache, capsys):
    cache.rate = 1e-6  # ceilings far below anything: every row beats them
    runner.calibrate(_options())
    planted = runner.calibrate(_options())
    assert planted.flops_per_s < 1e6
    cache.rate = 1e6  # what the machine really does, once it is measured again
    capsys.readouterr()
    assert run(["profile", "se", "cbam", "--shape", "2,16,4,4", *FAST, "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert captured.err.count("measuring them again") == 1  # once per run, said on stderr
    assert len(cache.calls) == 6  # the planted three, then the three measured again
    assert all(r["of_limit"] <= 1.1 for r in rows)
    record = json.loads(next(cache.folder.glob("matmul-*.json")).read_text())
    assert record["value"]["seconds"] == pytest.approx(2 * 512 ** 3 / (100e9 * 1e6))  # replaced in the cache


def test_a_refusal_measures_nothing(cache, capsys):
    assert run(["profile", "mha", "--shape", "1,3,224,224", "--mode", "infer"]) == 2
    err = capsys.readouterr().err
    assert "mha cannot take shape 1,3,224,224" in err and err.count("\n") == 1
    assert cache.calls == [] and not cache.folder.exists()
    assert run(["sweep", "mha", "--shape", "1,3,8,8", "--hw", "8,16", "--mode", "infer"]) == 2
    assert cache.calls == []


def test_a_refused_block_among_others_is_a_row_and_the_others_are_measured(cache, capsys):
    assert run(["profile", "mha", "se", "--shape", "1,3,8,8", *FAST, "--format", "json"]) == 1
    rows = {r["block"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["se"]["status"] == "ok" and "channels (3) must be divisible" in rows["mha"]["status"]


def test_a_ceiling_ends_at_its_deadline_however_slow_the_device(monkeypatch):
    """A product that takes a second (float16 emulated on a CPU, say): the warm-up alone is measured and the
    sizes stop growing, whatever the repeats asked for."""
    clock = [0.0]
    monkeypatch.setattr(efficiency.time, "perf_counter", lambda: clock[0])
    calls = []

    def slow():
        calls.append(1)
        clock[0] += 1.0

    assert efficiency.best_call(slow, lambda: None, min_seconds=0.1, repeats=3, deadline=0.5) == 1.0
    assert len(calls) == 1
    calls.clear()
    clock[0] = 0.0

    def quick():
        calls.append(1)
        clock[0] += 0.001

    assert efficiency.best_call(quick, lambda: None, min_seconds=0.01, repeats=3, deadline=10.0) == 0.001
    assert len(calls) == 1 + 10  # warm-up, then until 3 calls and 0.01 s


def test_a_slow_matmul_stops_growing_after_its_first_size(monkeypatch):
    import torch

    sizes = []
    real_mm = torch.mm

    def counted(a, b):
        sizes.append(a.shape[0])
        return real_mm(a, b)

    monkeypatch.setattr(efficiency, "SLOW_CALL_S", 0.0)  # every product counts as slow
    monkeypatch.setattr(efficiency.torch, "mm", counted)
    peak = efficiency.measure_matmul_peak("cpu", torch.float32, min_seconds=0.0, repeats=1)
    assert peak.size == 256 and set(sizes) == {256}
