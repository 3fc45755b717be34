"""Campaigns on a real Ray, all on this machine (the session's ``ray_cluster``: one head node with 2 CPUs
and 2 logical GPUs, plus two nodes that one test adds and removes). Together well under 90 s."""

from __future__ import annotations

import csv
import socket

import pytest

pytest.importorskip("ray")

from attnzoo.campaign.driver import Campaign  # noqa: E402
from attnzoo.campaign.executors import Local  # noqa: E402
from attnzoo.campaign.ray_executor import RayExecutor  # noqa: E402
from attnzoo.campaign.rows import RowFile  # noqa: E402
from attnzoo.campaign.units import RUNNERS, Unit, register_runner  # noqa: E402
from attnzoo.cli import run  # noqa: E402
from attnzoo.profiling.runner import COLUMNS, ProfileOptions, plan_units  # noqa: E402

pytestmark = pytest.mark.slow

FAST = ["--mode", "infer", "--min-time", "0.02", "--warmup", "1", "--device", "cpu"]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_profile_on_ray_gives_the_rows_of_a_plain_run(ray_cluster, tmp_path):
    """The same units as a run without Ray (the Local executor), the same counts, each row saying where."""
    args = ["profile", "se", "eca", "sdpa", "--shape", "1,16,6,6", *FAST]
    assert run([*args, "--threads", "1", "--output", str(tmp_path / "here.csv")]) == 0
    assert run([*args, "--threads", "1", "--ray", "--output", str(tmp_path / "ray.csv")]) == 0
    here, there = _rows(tmp_path / "here.csv"), _rows(tmp_path / "ray.csv")
    assert [r["unit_id"] for r in there] == [r["unit_id"] for r in here]  # same units, in the plan's order
    for a, b in zip(here, there):
        assert (a["params"], a["macs"], a["status"]) == (b["params"], b["macs"], "ok")
        assert b["node"] and b["host"] == socket.gethostname() and b["threads"] == "1"
        assert float(b["device_gflops"]) > 0  # the node's ceilings, measured on the node
    assert (tmp_path / "ray.csv.campaign.json").exists()


def test_cpu_threads_under_ray_are_the_ones_asked_for_and_time_alike(ray_cluster):
    """Ray runs a task with one OpenMP thread unless it asks for CPUs: a --threads 2 row must time with 2
    threads, as the same row measured without Ray does. This machine's cores are shared, and a descheduled
    thread stalls a 2-thread timing for milliseconds: the best of three interleaved rounds is compared."""
    options = ProfileOptions(device="cpu", mode="infer", min_time=0.2, warmup=3, threads=2).checked()
    units = plan_units(["mha"], ["1,196,64"], options)
    here, there = [], []
    for _ in range(3):
        here += list(Local().run(units))
        there += list(RayExecutor("local", calibrate=False).run(units))
    assert {r["threads"] for r in here + there} == {2}
    assert all(r["node"] for r in there) and not any(r["node"] for r in here)
    ratio = min(r["fwd_ms"] for r in there) / min(r["fwd_ms"] for r in here)
    assert 0.6 < ratio < 1.67, ratio


def _units(count: int, mode: str = "infer"):
    options = ProfileOptions(device="cpu", mode=mode, min_time=0.2, warmup=1, threads=1).checked()
    shapes = [f"1,16,{h},{h}" for h in range(4, 4 + count)]
    return plan_units(["se"], shapes, options)


def test_units_on_logical_gpus_get_one_gpu_each(ray_cluster):
    """Each unit asks for num_gpus=1 (never a fraction): Ray hands each one GPU id of the two."""
    executor = RayExecutor("local", resources=lambda unit: {"num_gpus": 1, "num_cpus": 1}, calibrate=False)
    units = _units(2, mode="train")  # no ceilings to measure: a GPU task starts a fresh worker each time
    rows = list(executor.run(units))
    assert sorted(r["unit_id"] for r in rows) == sorted(u.id for u in units)
    assert all(r["device_index"] in ("0", "1") for r in rows)  # one whole GPU each, as Ray numbers them
    assert all(r["status"] == "ok" and r["device"] == "cpu" for r in rows)  # the blocks ran on the CPU


def test_a_dead_worker_is_retried_and_an_error_becomes_the_units_row(ray_cluster, tmp_path):
    register_runner("crash-once", "tests.campaign_helpers:crash_once")
    register_runner("raises", "tests.campaign_helpers:raises")
    try:
        crash = Unit.make("crash-once", "se", (1, 8, 4, 4), {"marker": str(tmp_path / "crashed")})
        bad = Unit.make("raises", "se", (1, 8, 4, 4))
        executor = RayExecutor("local", resources=lambda unit: {"num_cpus": 1}, calibrate=False, max_retries=2)
        rows = {r["unit_id"]: r for r in executor.run([crash, bad])}
    finally:
        RUNNERS.pop("crash-once"), RUNNERS.pop("raises")
    assert (tmp_path / "crashed").exists() and rows[crash.id]["status"] == "ok"  # its second worker
    assert rows[bad.id]["status"] == "error: ValueError: a bug outside the block"


def test_a_node_removed_mid_run_loses_nothing_after_resume(ray_cluster, tmp_path):
    """Two worker nodes; one is removed after the first row. Its units come back as lost rows (no retries
    here, to test --resume), the resumed campaign measures exactly those, and each unit is in the file once."""
    nodes = [ray_cluster.add_node(num_cpus=1, resources={"spare": 1}) for _ in range(2)]
    ray_cluster.wait_for_nodes()
    units = _units(6)
    out = tmp_path / "zoo.csv"
    steer = {"resources": lambda unit: {"num_cpus": 1, "resources": {"spare": 1}}, "calibrate": False}
    try:
        removed = []

        def remove_one(row):
            if not removed:
                removed.append(nodes[1])
                ray_cluster.remove_node(nodes[1])

        first = Campaign("profile", units, row_file=RowFile(out, "csv", COLUMNS))
        first.open()
        first.run(RayExecutor("local", max_retries=0, **steer), on_row=remove_one)
        statuses = [r["status"] for r in _rows(out)]
        assert len(statuses) == 6 and "ok" in statuses
        lost = [s for s in statuses if s.startswith("lost")]
        assert lost, statuses  # the removed node was running a unit

        again = Campaign("profile", units, row_file=RowFile(out, "csv", COLUMNS), resume=True)
        again.open()
        assert len(again.done) == 6 - len(lost)
        measured_again = []
        again.run(RayExecutor("local", **steer), on_row=lambda row: measured_again.append(row["unit_id"]))
    finally:
        for node in nodes[:1]:
            ray_cluster.remove_node(node)
    rows = _rows(out)
    assert sorted(r["unit_id"] for r in rows) == sorted(u.id for u in units)  # each unit once
    assert all(r["status"] == "ok" for r in rows)
    assert len(measured_again) == len(lost)
