"""The bandwidth curve's working set stays a small share of free memory (issue 32, item 7)."""

from __future__ import annotations

import os

import torch

from attnzoo.profiling import bandwidth


def test_the_largest_working_set_follows_free_memory(monkeypatch):
    page = 4096
    free_pages = {"value": 0}
    monkeypatch.setattr(os, "sysconf", lambda name: page if name == "SC_PAGE_SIZE" else free_pages["value"])
    cpu = torch.device("cpu")
    for free in (2 * 2 ** 30, 16 * 2 ** 30, 64 * 2 ** 30):
        free_pages["value"] = free // page
        fitting = [size for size in bandwidth.SIZES if bandwidth._fits(cpu, size)]
        assert fitting, free
        assert 2 * max(fitting) <= bandwidth.CPU_SHARE * free  # two buffers of the largest size
        larger = [size for size in bandwidth.SIZES if size > max(fitting)]
        assert all(2 * size > bandwidth.CPU_SHARE * free for size in larger)
    free_pages["value"] = 2 * 2 ** 30 // page
    assert not bandwidth._fits(cpu, bandwidth.SIZES[-1])  # no 1 GiB buffers beside 2 GiB free
