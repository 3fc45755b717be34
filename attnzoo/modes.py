"""The modes of a run (``--compile``, ``--amp``, ``--channels-last``) that profiling and training share:
what autocast computes in and whether the compiler can run. Training reaches them here without importing
the profiler; :mod:`attnzoo.profiling.prepare` is where profiling applies them to a block.
"""

from __future__ import annotations

import contextlib

import torch


def check_compiler(device_type: str) -> None:
    """``--compile`` on the CPU needs the C++ compiler that torch.compile's CPU backend calls."""
    import os
    import shutil

    from attnzoo.errors import ConfigError

    if device_type != "cpu":
        return
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    if not any(shutil.which(name) for name in candidates):
        raise ConfigError("--compile on the CPU needs a C++ compiler (g++ or clang++, or $CXX) and none was found")
    # torch.compile's CPU backend imports torch.utils.cpp_extension, which warns "No CUDA runtime is found"
    # on a machine without CUDA: true, and no concern of a CPU compile.
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def autocast(device: str, enabled: bool):
    """The autocast context of ``--amp`` on ``device`` (a null context when off)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype(device))


def autocast_dtype(device: str) -> torch.dtype:
    """What ``--amp`` computes in: bfloat16 on the CPU (its fast half type), float16 on CUDA."""
    return torch.float16 if device.startswith("cuda") else torch.bfloat16


__all__ = ["autocast", "autocast_dtype", "check_compiler"]
