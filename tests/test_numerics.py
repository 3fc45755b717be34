"""What each mode costs in accuracy: every row off eager float32 carries its output's (and, when it trains,
its input gradient's) error against eager float32 on the same inputs and weights, and its NaN/inf count;
--input-scale and --sdpa-backend, and the kernel that ran."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from attnzoo.api import profile_rows
from attnzoo.cli import run
from attnzoo.profiling.measurements import output_error
from attnzoo.profiling.runner import ProfileOptions

FAST = dict(device="cpu", min_time=0.01, warmup=1, threads=1)
CLI_FAST = ["--min-time", "0.01", "--warmup", "1", "--threads", "1", "--device", "cpu"]


def _rows(names, shape="2,64,8,8", registry=(), **options):
    return {r["block"]: r for r in profile_rows(names, [shape], ProfileOptions(**{**FAST, "mode": "infer", **options}),
                                                  registry=registry)}


class Exponential(nn.Module):
    """exp(x * gain): past float16's largest value (65504) for |x| above about 11 / gain, never past
    bfloat16's (3e38) for ordinary inputs. A block that overflows in one half type and not the other."""

    def __init__(self, channels: int, gain: float = 2.0):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.gain = gain

    def forward(self, x):
        return torch.exp(x * self.gain) * self.scale.view(1, -1, 1, 1)


class ChannelsLastTrap(nn.Module):
    """Right in the contiguous format, wrong (a planted offset) in channels-last: a mode's wrong result."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        out = self.conv(x)
        return out + 0.5 if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else out


CARD = """name = "{name}"
title = "test block"
paper = "none"
url = "https://example.org"
family = "conv"
layout = "BCHW"
target = "tests.test_numerics:{target}"
complexity = "O(N)"
[args]
channels = "C"
"""


@pytest.fixture
def planted(tmp_path):
    (tmp_path / "exponential.toml").write_text(CARD.format(name="exponential", target="Exponential"))
    (tmp_path / "trap.toml").write_text(CARD.format(name="trap", target="ChannelsLastTrap"))
    return [str(tmp_path)]


def test_an_eager_float32_row_reports_no_error_and_half_types_a_small_one():
    reference = _rows(["mha", "sdpa", "se"])
    for row in reference.values():
        assert row["status"] == "ok" and row["max_abs_err"] is None and row["rel_err"] is None
        assert row["nonfinite"] is None
    assert reference["mha"]["sdpa_kernel"] in ("flash", "math") and reference["se"]["sdpa_kernel"] is None
    for dtype in ("bfloat16", "float16"):
        rows = _rows(["mha", "sdpa", "se"], dtype=dtype)
        for name, row in rows.items():
            assert row["status"] == "ok", row["status"]
            assert 0 < row["rel_err"] < 5e-2, (dtype, name, row["rel_err"])
            assert row["max_abs_err"] > 0 and row["nonfinite"] == 0


def test_the_error_is_the_same_in_every_run():
    first, again = _rows(["mha"], dtype="bfloat16"), _rows(["mha"], dtype="bfloat16")
    assert first["mha"]["max_abs_err"] == again["mha"]["max_abs_err"]


def test_autocast_rows_carry_an_error_and_train_rows_the_gradients_too():
    rows = _rows(["mha", "se"], amp=True, mode="both")
    for row in rows.values():
        assert row["amp"] == "bfloat16" and 0 < row["rel_err"] < 5e-2
        assert 0 < row["grad_rel_err"] < 5e-2 and row["grad_nonfinite"] == 0


def test_a_block_that_overflows_in_float16_is_flagged_there_and_not_in_bfloat16(planted, capsys):
    half = _rows(["exponential"], shape="2,8,4,4", registry=planted, dtype="float16", input_scale=4.0)
    brain = _rows(["exponential"], shape="2,8,4,4", registry=planted, dtype="bfloat16", input_scale=4.0)
    assert half["exponential"]["status"] == "ok" and half["exponential"]["nonfinite"] > 0
    assert brain["exponential"]["nonfinite"] == 0 and brain["exponential"]["rel_err"] < 5e-2
    unit = _rows(["exponential"], shape="2,8,4,4", registry=planted, dtype="float16")
    assert unit["exponential"]["nonfinite"] == 0  # at unit variance it stays finite: --input-scale found it
    # The table marks the row and the line under it names the block; the row still counts as run.
    code = run(["profile", "exponential", "se", "--shape", "2,8,4,4", "--registry", planted[0], "--mode", "infer",
                "--dtype", "float16", "--input-scale", "4", *CLI_FAST])
    out, err = capsys.readouterr()
    assert code == 0
    assert "NaN/inf" in out and "NaN or inf in the output of exponential at 2,8,4,4" in err
    (named,) = [line for line in err.splitlines() if "NaN or inf" in line]
    assert "se at" not in named


def test_a_wrong_result_under_a_mode_is_caught(planted):
    rows = _rows(["trap"], shape="2,8,4,4", registry=planted, channels_last=True)
    assert rows["trap"]["max_abs_err"] == pytest.approx(0.5, rel=1e-3)
    right = _rows(["trap"], shape="2,8,4,4", registry=planted)
    assert right["trap"]["max_abs_err"] is None


def test_a_compiled_block_that_returns_a_perturbed_output_is_caught(monkeypatch):
    """torch.compile replaced by a 'compiler' that adds noise: the compiled row's error shows it, while an
    honest compiled row (here: the module itself) reports none."""
    monkeypatch.setattr("attnzoo.profiling.runner.check_compiler", lambda device: None)

    class Noisy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(*args) + 1e-2

    monkeypatch.setattr(torch, "compile", lambda module, mode=None: Noisy(module))
    noisy = _rows(["se"], compile=True)
    assert noisy["se"]["max_abs_err"] == pytest.approx(1e-2, rel=1e-2)
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: module)
    assert _rows(["se"], compile=True)["se"]["max_abs_err"] == 0.0


def test_sdpa_backends_on_the_cpu_say_which_kernel_ran_and_agree():
    math_rows, flash_rows = _rows(["sdpa", "mha"], sdpa_backend="math"), _rows(["sdpa", "mha"], sdpa_backend="flash")
    for name in ("sdpa", "mha"):
        assert math_rows[name]["sdpa_kernel"] == "math" and math_rows[name]["sdpa_backend"] == "math"
        assert math_rows[name]["rel_err"] < 1e-5
        if flash_rows[name]["status"] != "ok":  # torch 2.3's CPU flash kernel takes 4-D inputs only (sdpa's are 3-D)
            assert name == "sdpa" and "Flash attention kernel not used because" in flash_rows[name]["status"]
            continue
        assert flash_rows[name]["sdpa_kernel"] == "flash" and flash_rows[name]["rel_err"] < 1e-5
    assert flash_rows["mha"]["status"] == "ok"  # mha's heads are 4-D: flash runs on every supported torch


def test_a_backend_the_device_cannot_use_is_the_rows_status_and_the_others_run(capsys):
    code = run(["profile", "sdpa", "se", "--shape", "2,64,8,8", "--mode", "infer", "--sdpa-backend", "efficient",
                "--format", "json", *CLI_FAST])
    rows = {r["block"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert rows["sdpa"]["status"].startswith("error: forward failed: RuntimeError:")
    assert "scaled_dot_product_attention" in rows["sdpa"]["status"]
    assert rows["se"]["status"] == "ok"  # no attention: the backend does not concern it


@pytest.mark.parametrize("args, said", [
    (["--sdpa-backend", "flsh"], "--sdpa-backend flsh: not one of auto, math, flash, efficient, cudnn; did you mean 'flash'?"),
    (["--input-scale", "nan"], "--input-scale nan:"),
    (["--input-scale", "-2"], "--input-scale -2.0:"),
])
def test_bad_numerics_options_are_one_line(capsys, monkeypatch, args, said):
    from attnzoo.profiling import runner

    measured = []
    monkeypatch.setattr(runner, "profile_one", lambda *a, **k: measured.append(a) or {})
    assert run(["profile", "sdpa", "--shape", "2,64,8,8", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and measured == []


def test_new_options_at_their_default_keep_the_unit_ids():
    from attnzoo.profiling.runner import plan_units

    base = ProfileOptions(**FAST, mode="infer").checked()
    same = ProfileOptions(**FAST, mode="infer", input_scale=1.0, sdpa_backend="auto").checked()
    other = ProfileOptions(**FAST, mode="infer", input_scale=8.0).checked()
    ids = [plan_units(["se"], ["2,16,4,4"], o)[0].id for o in (base, same, other)]
    assert ids[0] == ids[1] != ids[2]


def test_output_error_counts_nonfinite_values_and_measures_the_rest():
    reference = torch.tensor([1.0, -2.0, 4.0, 8.0])
    got = torch.tensor([1.0, float("nan"), 4.5, float("inf")])
    assert output_error(got, reference) == {"max_abs_err": 0.5, "rel_err": 0.5 / 8.0, "nonfinite": 2}
    assert output_error(torch.full((3,), float("nan")), reference[:3]) == {"max_abs_err": None, "rel_err": None,
                                                                          "nonfinite": 3}
    assert output_error((reference, reference * 2), (reference, reference * 2))["max_abs_err"] == 0.0


def test_compare_reads_a_change_of_error_like_a_change_of_time(tmp_path, capsys):
    for dtype in ("bfloat16", "float16"):
        assert run(["profile", "mha", "--shape", "2,64,8,8", "--mode", "infer", "--dtype", dtype, *CLI_FAST,
                    "--output", str(tmp_path / f"{dtype}.json")]) == 0
    capsys.readouterr()
    assert run(["compare", str(tmp_path / "bfloat16.json"), str(tmp_path / "float16.json"), "--format", "json"]) == 0
    compared = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    assert "rel_err" in compared and compared["rel_err"]["verdict"] in ("less", "more")


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["flash", "efficient", "math"])
def test_sdpa_backends_on_cuda_say_which_kernel_ran_and_agree(backend):
    rows = _rows(["sdpa", "mha"], device="cuda", dtype="float16", sdpa_backend=backend, threads=None)
    for name, row in rows.items():
        if row["status"] != "ok":  # a kernel this GPU or these inputs cannot take: torch's reason, in the status
            assert "scaled_dot_product_attention" in row["status"] or "kernel" in row["status"], row["status"]
            continue
        assert row["sdpa_kernel"] == backend, (name, row["sdpa_kernel"])
        assert 0 <= row["rel_err"] < 1e-2 and row["nonfinite"] == 0
