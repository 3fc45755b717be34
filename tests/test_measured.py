"""Measured values asserted, not only their sign (issue 15, item 2): exact CPU peak bytes of a block whose
allocations are written out below, latency of a block that sleeps a known time, MACs in closed form."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.profiling.flops import count_macs
from attnzoo.profiling.memory import MIB, peak_bytes
from attnzoo.api import profile_rows
from attnzoo.profiling.runner import ProfileOptions

F32 = 4  # bytes


# --- exact CPU peak bytes: se at 2,16,4,4 -----------------------------------------------------------------

B, C, H, W = 2, 16, 4, 4
HIDDEN = max(1, C // 16)  # reduction 16: one hidden unit


def _se_forward_peak() -> int:
    """Forward of SE, tensors it creates: squeezed = x.mean((2, 3)) (B, C) [alive to the end, a local],
    h = fc1(squeezed) (B, 1), relu(h) (B, 1), fc2(...) (B, C), scale = sigmoid(...) (B, C) [a local], and
    out = x * scale (B, C, H, W). The temporaries h, relu(h) and fc2's output are gone before out is made,
    so the peak is at the last multiply: squeezed + scale + out."""
    return (B * C + B * C + B * C * H * W) * F32


def _se_training_peak() -> int:
    """Forward and backward of sum(out) with gradients for the weights and the input x. At the peak, the
    last operator of the backward: the gradient of x arrives along two paths, through the scale (grad * scale,
    B C H W) and through the mean (grad expanded / (H W), B C H W), and they are added into a third B C H W
    tensor. Alive with them: out (B C H W, the step keeps it), the loss and its gradient (scalars), and the
    weight and bias gradients of both FC layers (C h + h + h C + C). The forward's saved tensors
    (squeezed, relu(h), scale) are freed by then, and so is the gradient of squeezed (after the division)."""
    weight_grads = C * HIDDEN + HIDDEN + HIDDEN * C + C
    return (4 * B * C * H * W + 2 + weight_grads) * F32


def test_se_forward_and_training_step_peak_bytes_exactly():
    module, (x,) = attnzoo.create("se", (B, C, H, W))
    assert module.fc1.out_features == HIDDEN
    module.eval()
    with torch.inference_mode():
        assert peak_bytes(lambda: module(x)) == _se_forward_peak() == 2304
    module.train()
    xg = x.detach().requires_grad_(True)

    def step():
        module.zero_grad(set_to_none=True)
        xg.grad = None
        out = module(xg)  # kept, as a training step keeps its output
        out.sum().backward()

    step()
    assert peak_bytes(step) == _se_training_peak() == 8396


def test_se_rows_carry_those_peaks():
    options = ProfileOptions(device="cpu", mode="both", min_time=0.01, warmup=1, threads=1)
    (row,) = profile_rows(["se"], ["2,16,4,4"], options)
    assert row["status"] == "ok"
    assert row["fwd_peak_mib"] == round(_se_forward_peak() / MIB, 4)
    assert row["train_peak_mib"] == round(_se_training_peak() / MIB, 4)
    assert row["train_peak_mib"] > 3 * row["fwd_peak_mib"]  # a training step is not a forward


# --- latency of a known sleep -------------------------------------------------------------------------------

SLEEP_S = 0.02


class SleepBlock(nn.Module):
    """A test block whose forward takes SLEEP_S seconds (and a trivial multiply, so it can train)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        time.sleep(SLEEP_S)
        return x * self.scale


CARD = """name = "sleepy"
title = "test block"
paper = "none"
url = "https://example.org"
family = "conv"
layout = "BNC"
target = "tests.test_measured:SleepBlock"
complexity = "O(N)"
[args]
channels = "C"
"""


def test_row_latency_of_a_block_that_sleeps_20_ms(tmp_path):
    (tmp_path / "sleepy.toml").write_text(CARD)
    options = ProfileOptions(device="cpu", mode="both", min_time=0.1, warmup=1, threads=1)
    (row,) = profile_rows(["sleepy"], ["1,4,8"], options, registry=[str(tmp_path)])
    assert row["status"] == "ok"
    # time.sleep never returns early; a loaded machine may add a few ms. A 10x error either way fails.
    assert 20.0 <= row["fwd_ms"] < 60.0, row["fwd_ms"]
    assert 20.0 <= row["train_ms"] < 60.0, row["train_ms"]  # the backward of a multiply adds microseconds
    assert row["fwd_runs"] >= 3 and row["train_runs"] >= 3


# --- MACs in closed form ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 64, 8, 8), (1, 32, 5, 7), (3, 50, 64)])
def test_mha_macs_are_the_closed_form(shape):
    """Q, K, V and output projections 4 N C^2, Q K^T and the weighted sum of V 2 N^2 C, per image."""
    b, c, n = (shape[0], shape[1], shape[2] * shape[3]) if len(shape) == 4 else (shape[0], shape[2], shape[1])
    module, inputs = attnzoo.create("mha", shape)
    assert count_macs(module, inputs).macs == b * (4 * n * c * c + 2 * n * n * c)
