"""Shared test set-up: tests marked ``cuda`` run where a CUDA device is available and are skipped elsewhere,
so that ``pytest -m cuda`` on a machine with a GPU runs exactly them."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in cuda_items:
        item.add_marker(skip)
