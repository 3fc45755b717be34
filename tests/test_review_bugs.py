"""Bugs a review found by planting wrong answers; each test here failed before its fix (issue 15, item 5)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn as nn

from attnzoo.cli import run
from attnzoo.errors import ConfigError, UnknownBlockError
from attnzoo import api
from attnzoo.profiling import flops, runner
from attnzoo.profiling.flops import count_macs
from attnzoo.profiling.memory import TensorAllocationTracker, peak_bytes

FAST = ["--mode", "infer", "--min-time", "0.01", "--threads", "1"]
SWEEP = ["sweep", "se", "--shape", "1,16,4,4", "--hw", "4,6", *FAST]


# --- sweep --resume keeps one way of measuring ----------------------------------------------------------


@pytest.mark.parametrize("changed, key", [(["--dtype", "bfloat16"], "dtype"), (["--set", "reduction=4"], "overrides of se 1,16,4,4"),
                                          (["--min-time", "0.02"], "min_time")])
def test_resume_with_other_settings_is_refused(tmp_path, capsys, changed, key):
    out = tmp_path / "sweep.csv"
    args = SWEEP + ["--output", str(out)]
    assert run(args) == 0
    before = out.read_text()
    capsys.readouterr()
    assert run(args + changed + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert key in err and "--resume" in err and len(err.splitlines()) == 1
    assert out.read_text() == before  # nothing measured, nothing written
    assert run(args + ["--resume"]) == 0  # the same settings resume


def test_resume_may_extend_the_grid_with_the_same_settings(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    base = ["sweep", "se", "--shape", "1,16,4,4", *FAST, "--set", "reduction=4", "--output", str(out)]
    assert run(base + ["--hw", "4,6"]) == 0
    assert run(base + ["--hw", "4,6,8", "--resume"]) == 0
    assert list(pd.read_csv(out)["shape"]) == ["1,16,4,4", "1,16,6,6", "1,16,8,8"]
    assert run(base[:-4] + ["--output", str(out), "--hw", "4,6,8,10", "--resume"]) == 2  # --set dropped
    assert "overrides of se 1,16,4,4" in capsys.readouterr().err


def test_resume_without_a_settings_record_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    out.write_text('block,shape,status\nse,"1,16,4,4",ok\n')  # rows measured who knows how
    assert run(SWEEP + ["--output", str(out), "--resume"]) == 2
    assert "settings" in capsys.readouterr().err


def test_resume_retries_failed_points_only_when_asked(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep.json"
    args = SWEEP + ["--output", str(out)]
    real = runner.profile_one
    calls = []

    def failing_at_6(spec, shape, *args, **kwargs):
        calls.append(shape[2])
        row = real(spec, shape, *args, **kwargs)
        if shape[2] == 6:
            row["status"] = "error: forward failed: RuntimeError: planted"
        return row

    monkeypatch.setattr(runner, "profile_one", failing_at_6)
    assert run(args) == 1
    monkeypatch.setattr(runner, "profile_one", lambda *a, **k: (calls.append(a[1][2]), real(*a, **k))[1])
    calls.clear()
    assert run(args + ["--resume"]) == 1  # without --retry-failed the failed point stays as it was
    assert calls == []
    assert run(args + ["--resume", "--retry-failed"]) == 0
    assert calls == [6]
    rows = json.loads(out.read_text())
    assert [(r["shape"], r["status"]) for r in rows] == [("1,16,4,4", "ok"), ("1,16,6,6", "ok")]


def test_retry_failed_needs_resume(capsys, tmp_path):
    assert run(SWEEP + ["--output", str(tmp_path / "x.csv"), "--retry-failed"]) == 2
    assert "--resume" in capsys.readouterr().err


# --- the CPU tracker sees storages that grow in place ---------------------------------------------------


def test_tracker_sees_an_out_tensor_that_grows():
    a = torch.randn(512, 512)

    def fn():
        return torch.mm(a, a, out=torch.empty(0))

    assert peak_bytes(fn) == 512 * 512 * 4  # 1 MiB: the result's storage, grown from 0 bytes


def test_tracker_sees_resize_and_its_release():
    with TensorAllocationTracker() as tracker:
        t = torch.empty(0)
        t.resize_(1024)  # 4 KiB
        t.resize_(256, 1024)  # grows again, to 1 MiB
        assert tracker.current_bytes == 256 * 1024 * 4
        del t
        assert tracker.current_bytes == 0
    assert tracker.peak_bytes == 256 * 1024 * 4


def test_tracker_still_ignores_in_place_ops_on_existing_storage():
    x = torch.randn(1000)

    def fn():
        x.mul_(2)
        torch.add(x, 1, out=x)

    assert peak_bytes(fn) == 0


# --- --debug through run([...]) -------------------------------------------------------------------------


def test_debug_flag_given_to_run_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.delenv("ATTNZOO_DEBUG", raising=False)
    monkeypatch.setattr("sys.argv", ["pytest"])
    assert run(["info", "no-such-block"]) == 2
    with pytest.raises(UnknownBlockError):
        run(["info", "no-such-block", "--debug"])
    assert run(["info", "no-such-block"]) == 2  # and the flag does not stick


def test_debug_flag_given_to_run_reraises_row_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("ATTNZOO_DEBUG", raising=False)
    monkeypatch.setattr("sys.argv", ["pytest"])
    (tmp_path / "wrong.toml").write_text(_card("wrong", "torch.nn:Linear", "in_features = 5\nout_features = 3"))
    with pytest.raises(RuntimeError):
        run(["profile", "wrong", "--shape", "2,4,8", *FAST, "--registry", str(tmp_path), "--debug"])


# --- a bug inside a constructor is not a configuration error ---------------------------------------------


def _card(name: str, target: str, args: str) -> str:
    return (f'name = "{name}"\ntitle = "t"\npaper = "p"\nurl = "https://example.org"\nfamily = "conv"\n'
            f'layout = "BNC"\ntarget = "{target}"\ncomplexity = "O(N)"\n[args]\n{args}\n')


class BuggyConstructor(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.proj = nn.Linear(channels, "channels")  # a TypeError inside the constructor: a bug, not a card error


def test_constructor_bug_surfaces_and_bad_keyword_is_config_error(tmp_path):
    from attnzoo.build import build_module
    from attnzoo.registry import get_spec

    (tmp_path / "buggy.toml").write_text(_card("buggy", "tests.test_review_bugs:BuggyConstructor", 'channels = "C"'))
    (tmp_path / "typo.toml").write_text(_card("typo", "tests.test_review_bugs:BuggyConstructor",
                                              'channels = "C"\nchanels = 3'))
    with pytest.raises(TypeError) as info:
        build_module(get_spec("buggy", [str(tmp_path)]), (2, 4, 8))
    assert not isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError, match="chanels"):
        build_module(get_spec("typo", [str(tmp_path)]), (2, 4, 8))


# --- errors inside MAC formulas and the fvcore fallback -------------------------------------------------


def test_an_error_inside_a_mac_formula_surfaces(monkeypatch):
    def broken(inputs, outputs):
        raise TypeError("a bug in the formula")

    monkeypatch.setitem(flops.CONTRACTIONS, "aten::linear", ("linear", broken))
    with pytest.raises(TypeError, match="a bug in the formula"):
        count_macs(nn.Linear(4, 4), (torch.randn(2, 4),))


def test_fvcore_is_the_counter_and_the_row_says_so():
    count = count_macs(nn.Linear(4, 3), (torch.randn(2, 4),))
    assert count.macs == 2 * 4 * 3 and count.counter == "fvcore"
    row = next(iter(api.profile_rows(["se"], ["2,16,4,4"], runner.ProfileOptions(
        device="cpu", mode="infer", min_time=0.01, warmup=1, threads=1))))
    assert row["counter"] == "fvcore"


def test_fallback_only_on_a_failed_trace_and_it_says_why():
    weight = nn.Parameter(torch.randn(8, 8))

    class Closure(nn.Module):  # a parameter the module does not own: the JIT trace fails
        def forward(self, x):
            return x @ weight

    count = count_macs(Closure(), (torch.randn(4, 8),))
    assert count.macs == 4 * 8 * 8
    assert count.counter.startswith("FlopCounterMode: fvcore failed: ")
    assert "requires grad" in count.counter


def test_fallback_when_fvcore_cannot_be_imported(monkeypatch):
    def missing():
        raise ImportError("No module named 'fvcore'")

    monkeypatch.setattr(flops, "_fvcore_analysis", missing)
    count = count_macs(nn.Linear(4, 3), (torch.randn(2, 4),))
    assert count.macs == 2 * 4 * 3
    assert count.counter == "FlopCounterMode: fvcore failed: No module named 'fvcore'"


def test_other_errors_during_counting_are_not_hidden_by_the_fallback(monkeypatch):
    class Analysis:  # fvcore broken in a way that is not a failed trace: an error inside total()
        def __init__(self, *args):
            pass

        def __getattr__(self, name):  # the configuration calls chain and return the analysis
            return lambda *args, **kwargs: self

        def total(self):
            raise AttributeError("'FlopCountAnalysis' has no attribute 'planted'")

    monkeypatch.setattr(flops, "_fvcore_analysis", lambda: (Analysis, frozenset()))
    with pytest.raises(AttributeError, match="planted"):
        count_macs(nn.Linear(4, 3), (torch.randn(2, 4),))


# --- train: the CUDA random state in checkpoints, each block built once ---------------------------------


def test_checkpoints_keep_the_cuda_random_state(tmp_path, monkeypatch):
    from attnzoo.train import loop
    from attnzoo.train.models import build_model

    cuda_state = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in cuda_state])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(list(states)))
    model = build_model("se")
    optimizer = torch.optim.Adam(model.parameters())
    cfg = loop.TrainConfig(block="se", out=tmp_path)
    path = tmp_path / "epoch-001.pt"
    loop.save_checkpoint(path, model, optimizer, 1, [], cfg)
    state = torch.load(path, weights_only=True)
    assert [s.tolist() for s in state["cuda_rng"]] == [s.tolist() for s in cuda_state]
    loop.restore_rng(state)
    assert [[s.tolist() for s in r] for r in restored] == [[s.tolist() for s in cuda_state]]


def test_train_builds_each_block_at_the_batch_size_and_checks_before_any_run(tmp_path, monkeypatch, capsys):
    """A comparison builds every block at the batch it trains with, once to check it before any data is
    loaded; each run (one per seed) then builds its own network."""
    import attnzoo.build as build
    import attnzoo.train.zoo as zoo

    real = build.build_module
    shapes, trained = [], []

    def recording(spec, shape, overrides=None):
        shapes.append((spec.name, tuple(shape)))
        return real(spec, shape, overrides)

    def fake_run(run, protocol, data, cost, info=None, resume=False, say=None):  # the loop is tested elsewhere
        trained.append((run.block, len(shapes)))
        return {"block": run.block, "seed": run.seed, "status": "ok", "shape": "8,32,24,24", "min_test_loss": 0.5}

    monkeypatch.setattr(build, "build_module", recording)
    monkeypatch.setattr(zoo, "run_one", fake_run)
    args = ["train", "--compare", "se,cbam", "--epochs", "1", "--train-size", "16", "--test-size", "8",
            "--batch-size", "8", "--dataset", "synthetic", "--device", "cpu", "--out", str(tmp_path)]
    assert run(args) == 0
    assert shapes[:2] == [("se", (8, 32, 24, 24)), ("cbam", (8, 32, 24, 24))]  # the checks, before any run
    assert all(shape[0] == 8 for _, shape in shapes)
    assert [name for name, _ in trained] == ["se", "cbam"] and trained[0][1] >= 2
    # A bad block is still refused before any data is loaded or any block is trained.
    trained.clear()
    assert run(args[:2] + ["se,cbam", "--set", "cbam.reduction=64"] + args[3:] + ["--out", str(tmp_path / "b")]) == 2
    assert "cannot take" in capsys.readouterr().err and trained == []


@pytest.mark.cuda
def test_cuda_random_state_round_trips_through_a_checkpoint(tmp_path):
    from attnzoo.train import loop
    from attnzoo.train.models import build_model

    model = build_model("se").cuda()
    optimizer = torch.optim.Adam(model.parameters())
    torch.cuda.manual_seed_all(7)
    path = tmp_path / "epoch-001.pt"
    loop.save_checkpoint(path, model, optimizer, 1, [], loop.TrainConfig(block="se", out=tmp_path))
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(8)
    loop.restore_rng(torch.load(path, weights_only=True))
    assert torch.equal(torch.rand(4, device="cuda"), expected)


@pytest.mark.cuda
def test_cuda_rows_measure_a_training_step_apart_from_the_forward():
    options = runner.ProfileOptions(device="cuda", mode="both", min_time=0.05, warmup=1)
    (row,) = api.profile_rows(["se"], ["8,64,32,32"], options)
    assert row["status"] == "ok" and row["device"].startswith("cuda")
    out_mib = 8 * 64 * 32 * 32 * 4 / 2 ** 20  # the forward's output alone
    assert row["fwd_peak_mib"] >= out_mib and row["train_peak_mib"] >= 2 * out_mib


# --- small misleading names and dead code (item 6) -------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--over", "channels", "--hw", "4,8"], "--hw varies H = W"),
    (["--hw", "4,8", "--max-memory", "0"], "'none' for no limit"),
    (["--hw", "4,8", "--max-memory", "0MiB"], "'none' for no limit"),
])
def test_conflicting_or_empty_sweep_options_are_refused(args, message, capsys):
    assert run(["sweep", "se", "--shape", "1,16,4,4", *args, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_max_memory_none_means_no_limit():
    from attnzoo.cli.sweep_cmd import parse_memory

    assert parse_memory("none") is None and parse_memory("512MiB") == 512 and parse_memory("2G") == 2048


def test_unknown_family_is_a_usage_error_not_an_unknown_block(capsys):
    assert run(["list", "--family", "nope"]) == 2
    assert "unknown family 'nope'" in capsys.readouterr().err


def test_info_example_shape_builds_for_both_layouts(capsys):
    import attnzoo
    from attnzoo.cli.info_cmd import EXAMPLE_SHAPE

    for name in ("cbam", "vit-attention"):  # BCHW and BNC
        assert run(["info", name, "--json"]) == 0
        example = json.loads(capsys.readouterr().out)["example"]
        assert example == f"attnzoo profile {name} --shape {EXAMPLE_SHAPE}"
        module, inputs = attnzoo.create(name, EXAMPLE_SHAPE)
        assert module(*inputs).shape == inputs[0].shape


def test_package_docstring_sweep_recipe_runs():
    import attnzoo
    from attnzoo.growth import fit_rows, grid_shapes, parse_values

    assert not callable(getattr(attnzoo, "sweep", None))  # no sweep function is advertised
    frame = attnzoo.profile("sdpa", grid_shapes((1, 8, 4, 4), "hw", parse_values("4,8")), mode="infer",
                            min_time=0.01, warmup=1, threads=1)
    (fit,) = fit_rows(frame.to_dict("records"), "hw", ["macs"])
    assert fit["exponent"] == pytest.approx(2.0)  # sdpa: 2 N^2 C MACs
    import attnzoo.sweep as sweep_module

    assert not hasattr(sweep_module, "POINT_KEYS")
