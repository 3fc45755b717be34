"""Runners for the Ray tests: units that kill their worker once, or raise. Imported by Ray's workers."""

from __future__ import annotations

import os
from pathlib import Path


def crash_once(unit, context):
    """Kill the worker the first time (as a segfault or the OOM killer would), then give a row."""
    marker = Path(unit.settings_dict["marker"])
    if not marker.exists():
        marker.write_text("crashed once\n")
        os._exit(1)
    return {"block": unit.block, "shape": unit.shape_text, "status": "ok", "pid": os.getpid()}


def raises(unit, context):
    raise ValueError("a bug outside the block")


def sleepy(unit, context):
    """A unit that takes a while, so that a test can remove its node while it runs."""
    import time

    time.sleep(unit.settings_dict["seconds"])
    return {"block": unit.block, "shape": unit.shape_text, "status": "ok"}
