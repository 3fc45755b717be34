"""Shared test set-up: tests marked ``cuda`` run where a CUDA device is available and are skipped elsewhere,
so that ``pytest -m cuda`` on a machine with a GPU runs exactly them."""

from __future__ import annotations

import os
import tempfile

import pytest

# The device's ceilings are kept in a cache folder (attnzoo.profiling.ceilings): the tests keep theirs in a
# folder of their own, shared by the session's subprocesses and Ray workers, never the user's ~/.cache.
_CACHE = None if "ATTNZOO_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="attnzoo-test-cache-")
if _CACHE is not None:
    os.environ["ATTNZOO_CACHE_DIR"] = _CACHE


def pytest_unconfigure(config):
    if _CACHE is not None:
        import shutil

        shutil.rmtree(_CACHE, ignore_errors=True)


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


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray for the whole test session, on this machine only: a head node with 2 CPUs and 2 logical GPUs
    (``ray.init(num_cpus=2, num_gpus=2)``'s resources; the GPUs need not exist, so tests steer units to them
    to exercise GPU scheduling while the blocks run on the CPU). ``ray.cluster_utils.Cluster`` so that a
    test can add nodes and remove one mid-run. Skipped where Ray is not installed."""
    import os
    from pathlib import Path

    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Workers import the tests' helper runners: give them the checkout on their path.
    root = str(Path(__file__).resolve().parent.parent)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, *([saved] if saved else [])])
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2,
                                                                 "include_dashboard": False})
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium session for the tests that open a page (skipped without Chromium, failed under CI,
    where the page must be tested in a real browser)."""
    from tests.browser import Browser, find_browser

    binary = find_browser()
    if binary is None:
        message = "no Chromium found (install Debian's 'chromium', or set ATTNZOO_CHROMIUM)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; under CI the report must be tested in a real browser")
        pytest.skip(message)
    session = Browser(binary, tmp_path / "chromium-profile")
    yield session
    session.close()
