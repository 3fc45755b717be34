"""Profiling: MACs against torch's FlopCounterMode for every card, the attention formulas, the CPU memory
tracker against modules whose peak is known by construction, timing, and rows that fail."""

from __future__ import annotations

import logging
import math
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.errors import ConfigError, ShapeError, UnknownBlockError
from attnzoo.profiling import flops
from attnzoo.profiling.flops import count_macs, einsum_macs, flop_counter_macs
from attnzoo.profiling.memory import MIB, TensorAllocationTracker, peak_bytes
from attnzoo.api import profile_rows
from attnzoo.profiling.runner import COLUMNS, ProfileOptions
from attnzoo.profiling.suites import bundled_profiles_dir, check_blocks, load_suite
from attnzoo.profiling.timing import time_callable

SPECS = attnzoo.list_blocks()
NAMES = [spec.name for spec in SPECS]
#: Small shapes tried in turn until the card takes one (some need more channels or a larger map).
CANDIDATE_SHAPES = [(2, 32, 8, 8), (2, 64, 16, 16), (2, 64, 32, 32)]
FAST = ProfileOptions(device="cpu", mode="infer", min_time=0.01, warmup=1, threads=1)
cuda = pytest.mark.cuda  # skipped without a CUDA device (tests/conftest.py); `pytest -m cuda` runs them


def _build_small(spec):
    for shape in CANDIDATE_SHAPES:
        try:
            return attnzoo.create(spec.name, shape)
        except ShapeError:
            continue
    pytest.fail(f"{spec.name} takes none of the shapes {CANDIDATE_SHAPES}")


# --- MACs ---------------------------------------------------------------------------------------------


def _cross_check(spec) -> str | None:
    """None when attnzoo's count (fvcore + handles) equals torch's dispatch-level count with nothing
    uncounted, else why not.

    FlopCounterMode runs with ``flop_counter_mapping()``: attnzoo's deform_conv2d formula (torch has none)
    and, on a torch whose FlopCounterMode has no formula for a fused SDPA kernel (torch 2.14 counts
    ``aten._scaled_dot_product_flash_attention_for_cpu`` as 0), torch's own ``sdpa_flop_count`` for it,
    never attnzoo's formula, so the check stays independent of the counter it checks (see the planted
    miscount below)."""
    module, inputs = _build_small(spec)
    count = count_macs(module, inputs)
    reference = flop_counter_macs(module, inputs)
    detail = f"by operator {count.by_operator}, uncounted {count.uncounted}, method {count.method}"
    if count.uncounted:
        return f"{spec.name}: operators left uncounted: {detail}"
    if count.macs != reference:
        return (f"{spec.name}: attnzoo counts {count.macs:,} MACs, FlopCounterMode {reference:,} "
                f"({count.macs / max(reference, 1) - 1:+.1%}); {detail}")
    assert count.flops == 2 * count.macs
    return None


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_macs_agree_with_flop_counter_mode(spec):
    """Every card: attnzoo's count equals FlopCounterMode's on this torch (see _cross_check)."""
    problem = _cross_check(spec)
    assert problem is None, problem


SDPA_CARDS = ["sdpa", "mha", "vit-attention", "non-local", "swin-window-attention"]


def test_a_planted_sdpa_miscount_fails_the_cross_check(monkeypatch):
    """The cross-check can fail: with attnzoo's SDPA formula planted wrong (Q K^T only, the weighted sum of
    V forgotten), every card whose attention runs through SDPA disagrees with FlopCounterMode, on a torch
    that has its own formula for the fused kernel and on one that gets torch's formula through the mapping."""
    name, handle = flops.CONTRACTIONS["aten::scaled_dot_product_attention"]

    def scores_only(inputs, outputs):
        q, k = flops._shape(inputs[0]), flops._shape(inputs[1])
        return math.prod(flops._broadcast(q[:-2], k[:-2])) * q[-2] * k[-2] * q[-1]

    monkeypatch.setitem(flops.CONTRACTIONS, "aten::scaled_dot_product_attention", (name, scores_only))
    for card in SDPA_CARDS:
        problem = _cross_check(attnzoo.get_spec(card))
        assert problem is not None and "FlopCounterMode" in problem, f"{card}: the planted miscount went unseen"


def _known_sdpa_macs(b, h, n, s, e, ev):
    return b * h * n * s * (e + ev)  # Q K^T: n*s*e, P V: n*s*ev, per batch and head


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_flop_counter_mode_counts_one_known_sdpa_call(device):
    """The probe: FlopCounterMode with attnzoo's mapping counts one SDPA call as the formula written out,
    whichever fused kernel this torch dispatches to (the CPU flash kernel; flash or efficient on CUDA)."""
    dtype = torch.float16 if device == "cuda" else torch.float32
    b, h, n, s, e, ev = 2, 3, 16, 24, 8, 8
    q = torch.randn(b, h, n, e, device=device, dtype=dtype)
    k = torch.randn(b, h, s, e, device=device, dtype=dtype)
    v = torch.randn(b, h, s, ev, device=device, dtype=dtype)

    class Attend(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    assert flop_counter_macs(Attend(), (q, k, v)) == _known_sdpa_macs(b, h, n, s, e, ev) == 36_864


def test_the_mapping_adds_sdpa_formulas_only_where_torch_has_none():
    """torch's own formulas win where they exist: the mapping fills gaps, it never replaces."""
    from torch.utils import flop_counter

    mapping = flops.flop_counter_mapping()
    registry = getattr(flop_counter, "flop_registry", {})
    for kernel in flops.SDPA_KERNELS:
        op = getattr(torch.ops.aten, kernel, None)
        if op is None:
            continue
        assert (op in mapping) == (op not in registry), kernel


def _mha_macs(b, n, c):
    return b * (4 * n * c * c + 2 * n * n * c)


def test_mha_formula():
    b, c, h, w = 2, 256, 24, 24
    n = h * w
    module, inputs = attnzoo.create("mha", (b, c, h, w))
    count = count_macs(module, inputs)
    assert count.macs == _mha_macs(b, n, c) == 641_728_512
    assert count.by_operator["sdpa"] == 2 * b * n * n * c


def test_sdpa_formula():
    b, c, h, w = 2, 256, 24, 24
    n = h * w
    module, inputs = attnzoo.create("sdpa", (b, c, h, w))
    assert count_macs(module, inputs).macs == 2 * b * n * n * c


def test_token_shape_formula():
    b, n, c = 3, 50, 64
    module, inputs = attnzoo.create("mha", (b, n, c))
    assert count_macs(module, inputs).macs == _mha_macs(b, n, c)


class _TorchMHA(nn.Module):
    def __init__(self, dim, heads, need_weights):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x):
        return self.attn(x, x, x, need_weights=self.need_weights)[0]


@pytest.mark.parametrize("need_weights", [True, False])
def test_torch_multihead_attention_is_counted_in_full(need_weights):
    """fvcore alone counts only the projections (53% low); the fast path is a fused kernel."""
    b, n, c = 2, 64, 32
    module, x = _TorchMHA(c, 4, need_weights), torch.randn(b, n, c)
    count = count_macs(module, (x,))
    assert count.macs == _mha_macs(b, n, c) == flop_counter_macs(module, (x,))
    assert not count.uncounted


def test_deform_conv2d_is_counted():
    torchvision = pytest.importorskip("torchvision")

    class Deform(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torchvision.ops.DeformConv2d(4, 8, 3, padding=1)

        def forward(self, x, offset):
            return self.conv(x, offset)

    x, offset, module = torch.randn(2, 4, 6, 6), torch.zeros(2, 18, 6, 6), Deform()
    count = count_macs(module, (x, offset))
    assert count.macs == 2 * 8 * 6 * 6 * 4 * 9 == flop_counter_macs(module, (x, offset))
    assert count.by_operator == {"deform_conv2d": count.macs}


def test_deform_conv2d_macs_with_stride_groups_and_odd_sizes():
    """The counter's deform_conv2d formula is attnzoo's own (FlopCounterMode has none), so the cross-check
    above cannot catch an error in it: here it is against the count written out."""
    torchvision = pytest.importorskip("torchvision")
    conv = torchvision.ops.DeformConv2d(6, 8, (3, 2), stride=2, padding=1, groups=2)

    class Deform(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x, offset):
            return self.conv(x, offset)

    b, h, w = 2, 7, 9
    h_out, w_out = (h + 2 - 3) // 2 + 1, (w + 2 - 2) // 2 + 1  # 4 x 5
    x, offset = torch.randn(b, 6, h, w), torch.randn(b, 2 * 3 * 2, h_out, w_out)
    # each output value of each of the 8 channels: (6 / 2 groups) input channels x 3 x 2 kernel taps
    expected = b * 8 * h_out * w_out * 3 * 3 * 2
    assert count_macs(Deform(), (x, offset)).macs == expected == 5760
    assert flop_counter_macs(Deform(), (x, offset)) == expected


def test_a_failed_trace_falls_back_to_flop_counter_mode_and_says_so():
    weight = nn.Parameter(torch.randn(8, 8))

    class Closure(nn.Module):  # a parameter the module does not own cannot be traced
        def forward(self, x):
            return x @ weight

    count = count_macs(Closure(), (torch.randn(4, 8),))
    assert count.macs == 4 * 8 * 8
    assert count.method == "flop_counter" and "jit trace failed" in count.note
    assert count.uncounted == ["unknown (jit trace failed)"]


@pytest.mark.parametrize("equation, shapes", [
    ("bhnd,bhmd->bhnm", [(2, 3, 5, 7), (2, 3, 11, 7)]),
    ("...ij,...jk", [(4, 2, 3), (3, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("bij,bkj->bik", [(2, 3, 4), (2, 5, 4)]),
    ("abc,d->ad", [(2, 3, 4), (5,)]),
    ("bchw,bc->bhw", [(2, 3, 4, 5), (2, 3)]),
    ("bn,bn->bn", [(2, 3), (2, 3)]),
])
def test_einsum_macs_agree_with_flop_counter(equation, shapes):
    class Einsum(nn.Module):
        def forward(self, *xs):
            return torch.einsum(equation, *xs)

    tensors = [torch.randn(s) for s in shapes]
    reference = flop_counter_macs(Einsum(), tensors)
    assert einsum_macs(equation, shapes) == reference
    assert count_macs(Einsum(), tensors).macs == reference


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x @ x

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError


class _Opaque(nn.Module):
    """A matmul hidden in an autograd.Function, and cdist, which has no formula."""

    def forward(self, x):
        return _Square.apply(x).softmax(-1) + torch.cdist(x, x)


def test_operators_without_formula_are_named_not_dropped(caplog, capsys):
    with caplog.at_level(logging.DEBUG):
        count = count_macs(_Opaque(), (torch.randn(4, 4),))
    assert "prim::PythonOp._Square" in count.uncounted
    assert "aten::cdist" in count.uncounted
    assert not count.complete
    assert "softmax" in count.not_macs and "aten::softmax" not in count.uncounted  # not a MAC, on purpose
    # fvcore stays quiet: nothing on stderr, no warning records
    assert capsys.readouterr().err == ""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_counting_leaves_training_mode_alone():
    module, inputs = attnzoo.create("mha", (2, 8, 16))
    module.train()
    count_macs(module, inputs)
    assert module.training


# --- memory -------------------------------------------------------------------------------------------

N = 262_144  # float32 elements in 1 MiB


def test_peak_of_a_known_sequence_of_allocations():
    x = torch.randn(N)

    def fn():
        y = x + 1  # 1 MiB
        z = torch.cat([y, y, y])  # 3 MiB more: the peak, 4 MiB
        del y
        return z.sum()  # 3 MiB + 4 bytes

    assert peak_bytes(fn) == 4 * MIB


def test_frees_are_seen():
    x = torch.randn(N)

    def fn():
        t = x * 2
        for _ in range(10):
            t = x * 2  # the new 1 MiB exists before the old one is freed: 2 MiB at most
        return t

    assert peak_bytes(fn) == 2 * MIB
    with torch.inference_mode():
        assert peak_bytes(fn) == 2 * MIB


def test_views_and_in_place_results_cost_nothing():
    x = torch.randn(N)

    def fn():
        y = x.view(512, 512).t().reshape(-1)  # the reshape of a transposed view copies: 1 MiB
        y.mul_(2).add_(1)  # in place
        return y.view(-1)

    assert peak_bytes(fn) == MIB


def test_tracker_returns_to_zero_and_keeps_outputs():
    with TensorAllocationTracker() as tracker:
        kept = torch.ones(1024) * 2  # 4 KiB kept
        dropped = torch.ones(2048) + 1  # 8 KiB, then freed
        del dropped
    assert tracker.peak_bytes == (1024 + 2048 + 2048) * 4  # kept, then ones(2048) and its sum: temporaries count
    assert tracker.current_bytes == 1024 * 4
    del kept


class _KnownPeak(nn.Module):
    """Forward: h = x @ W (B x 4C), out = h[:, :C] * 2 (B x C). Peak 5 B C floats: h and out together."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, 4 * c))
        self.c = c

    def forward(self, x):
        h = x @ self.weight
        return h[:, : self.c] * 2


def test_forward_peak_of_a_module_known_by_construction():
    b, c = 256, 256
    module, x = _KnownPeak(c), torch.randn(b, c)
    with torch.inference_mode():
        assert peak_bytes(lambda: module(x)) == 5 * b * c * 4


def test_training_step_memory_counts_activations_and_gradients():
    b, c = 64, 128
    linear = nn.Linear(c, c)
    x = torch.randn(b, c, requires_grad=True)

    def step():
        out = linear(x)
        out.sum().backward()

    # output, grad of the input, grad of the weight and of the bias; the loss and its grad are scalars
    assert peak_bytes(step) == (b * c + b * c + c * c + c + 2) * 4


@cuda
def test_cuda_peak_of_a_module_known_by_construction():
    b, c = 256, 256
    module, x = _KnownPeak(c).cuda(), torch.randn(b, c, device="cuda")
    with torch.inference_mode():
        peak = peak_bytes(lambda: module(x), "cuda")
    assert 5 * b * c * 4 <= peak <= 5 * b * c * 4 + 8 * MIB  # cuBLAS may take a workspace from the allocator


# --- timing -------------------------------------------------------------------------------------------


def test_timing_of_a_known_duration():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    start = time.perf_counter()
    timing = time_callable(fn, "cpu", min_time=0.05, warmup=2)
    elapsed = time.perf_counter() - start
    assert 2.0 <= timing.median_ms < 20.0
    assert timing.iqr_ms >= 0
    assert timing.blocks >= 3 and timing.runs == timing.blocks * timing.block_size
    assert len(calls) == timing.runs + timing.warmup
    assert timing.warmup >= 2
    assert elapsed >= 0.05


def test_timing_blocks_fast_calls():
    timing = time_callable(lambda: None, "cpu", min_time=0.02, warmup=1)
    assert timing.block_size > 1 and timing.median_ms < 1.0


def test_timing_rejects_nonpositive_min_time():
    with pytest.raises(ValueError):
        time_callable(lambda: None, "cpu", min_time=0)


@cuda
def test_cuda_timing_synchronises():
    x = torch.randn(1024, 1024, device="cuda")
    timing = time_callable(lambda: x @ x, "cuda", min_time=0.05)
    assert timing.median_ms > 0


# --- rows ---------------------------------------------------------------------------------------------


def test_rows_have_every_column_and_the_environment():
    rows = list(profile_rows(["se"], ["2,16,4,4"], ProfileOptions(device="cpu", mode="both", min_time=0.01,
                                                                  warmup=1, threads=1)))
    assert len(rows) == 1
    row = rows[0]
    assert tuple(row) == COLUMNS
    assert row["status"] == "ok"
    assert row["params"] == row["trainable_params"] == 16 * 1 + 1 + 1 * 16 + 16
    assert row["macs"] == 2 * 16 * 1 * 2 and row["flops"] == 2 * row["macs"]
    for column in ("fwd_ms", "fwd_iqr_ms", "train_ms", "train_iqr_ms", "fwd_peak_mib", "train_peak_mib"):
        assert isinstance(row[column], float) and row[column] >= 0, column
    assert row["fwd_runs"] >= 3 and row["train_runs"] >= 3
    assert row["device"] == "cpu" and row["dtype"] == "float32" and row["threads"] == 1
    assert row["torch"] == torch.__version__


def test_profile_returns_a_dataframe_with_the_papers_cbam():
    frame = attnzoo.profile("cbam", [(1, 256, 2, 2), "1,256,3,3"], device="cpu", mode="infer", min_time=0.01,
                            warmup=1, threads=1)
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["shape"]) == ["1,256,2,2", "1,256,3,3"]
    assert (frame["status"] == "ok").all()
    assert (frame["params"] == 8564).all()  # the paper's full CBAM at 256 channels
    assert frame["train_ms"].isna().all()  # mode infer


def test_rows_that_cannot_run_carry_a_status_and_the_run_goes_on():
    rows = list(profile_rows(["cbam", "mha"], ["1,2,3", "2,250,8,8", "2,16,4,4"], FAST))
    status = {(r["block"], r["shape"]): r["status"] for r in rows}
    assert len(rows) == 6
    assert status[("cbam", "1,2,3")] == "error: cbam works on feature maps: give B,C,H,W, got 1,2,3"
    assert status[("mha", "2,250,8,8")].startswith("error: mha cannot take shape 2,250,8,8")
    assert status[("cbam", "2,16,4,4")] == "ok" and status[("mha", "2,16,4,4")] == "ok"
    assert all("\n" not in s for s in status.values())


class OutOfMemoryBlock(nn.Module):
    """A test block whose forward runs out of memory."""

    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        raise MemoryError("pretend the tensor did not fit")


CARD = """name = "{name}"
title = "test block"
paper = "none"
url = "https://example.org"
family = "conv"
layout = "BNC"
target = "{target}"
complexity = "O(N)"
[args]
{args}
"""


@pytest.fixture
def test_registry(tmp_path):
    (tmp_path / "wrong-width.toml").write_text(CARD.format(
        name="wrong-width", target="torch.nn:Linear", args="in_features = 5\nout_features = 3"))
    (tmp_path / "hungry.toml").write_text(CARD.format(
        name="hungry", target="tests.test_profiling:OutOfMemoryBlock", args='channels = "C"'))
    return [str(tmp_path)]


def test_forward_errors_and_oom_become_statuses(test_registry):
    rows = list(profile_rows(["wrong-width", "hungry", "se"], ["2,4,8"], FAST, registry=test_registry))
    status = [r["status"] for r in rows]
    assert status[0].startswith("error: forward failed: RuntimeError:")
    assert status[1] == "oom: out of memory in forward: pretend the tensor did not fit"
    assert status[2].startswith("error: se works on feature maps")


def test_raise_errors_option_reraises(test_registry):
    options = ProfileOptions(device="cpu", mode="infer", min_time=0.01, raise_errors=True)
    with pytest.raises(RuntimeError):
        list(profile_rows(["wrong-width"], ["2,4,8"], options, registry=test_registry))


def test_unknown_names_and_bad_shapes_fail_before_running():
    with pytest.raises(UnknownBlockError, match="did you mean 'cbam'"):
        profile_rows(["cbam", "cbamm"], ["2,16,4,4"], FAST)
    with pytest.raises(ShapeError, match="malformed shape"):
        profile_rows(["cbam"], ["2,a,4,4"], FAST)
    with pytest.raises(ShapeError, match="no shape"):
        profile_rows(["cbam"], [], FAST)


@pytest.mark.parametrize("options, message", [
    (ProfileOptions(mode="fast"), "mode 'fast'"),
    (ProfileOptions(dtype="int8"), "dtype 'int8'"),
    (ProfileOptions(min_time=0), "min_time"),
    (ProfileOptions(device="tpu"), "device 'tpu'"),
    (ProfileOptions(threads=0), "threads"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        profile_rows(["cbam"], ["2,16,4,4"], options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        profile_rows(["cbam"], ["2,16,4,4"], ProfileOptions(device="cuda"))


@cuda
def test_cuda_row():
    rows = list(profile_rows(["mha"], ["2,64,8,8"], ProfileOptions(device="cuda", mode="both", min_time=0.05)))
    assert rows[0]["status"] == "ok" and rows[0]["device"].startswith("cuda")
    assert rows[0]["fwd_peak_mib"] > 0 and rows[0]["train_peak_mib"] > rows[0]["fwd_peak_mib"]


# --- suites -------------------------------------------------------------------------------------------


def test_seeds_suite_loads_and_names_known_blocks():
    suite = load_suite("seeds")
    assert suite.path == bundled_profiles_dir() / "seeds.toml"
    check_blocks(suite)
    shapes = {shape for run in suite.runs for shape in run.shapes}
    assert {"128,256,24,24", "50,49,512"} <= shapes


@pytest.mark.parametrize("text, message", [
    ("runs = 3", "runs"),
    ('[[runs]]\nblocks = ["cbam"]', "runs\\[0\\]: missing field 'shapes'"),
    ('[[runs]]\nblocks = ["cbam"]\nshapes = ["1,2"]', "runs\\[0\\].shapes"),
    ('[[runs]]\nblocks = []\nshapes = ["1,2,3"]', "runs\\[0\\].blocks"),
    ('[options]\nspeed = 1\n[[runs]]\nblocks = ["cbam"]\nshapes = ["1,2,3,4"]', "options.speed"),
    ('[options]\nmin_time = "1"\n[[runs]]\nblocks = ["cbam"]\nshapes = ["1,2,3,4"]', "options.min_time"),
    ("runs = [", "not valid TOML"),
])
def test_malformed_suites_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


def test_suite_with_unknown_block(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[runs]]\nblocks = ["cbam", "nope"]\nshapes = [[1, 2, 3, 4]]')
    with pytest.raises(ConfigError, match="runs\\[0\\].blocks: unknown block 'nope'"):
        check_blocks(load_suite(str(path)))


def test_missing_suite():
    with pytest.raises(ConfigError, match="bundled: .*seeds"):
        load_suite("no-such-suite")
