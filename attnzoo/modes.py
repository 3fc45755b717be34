"""The modes of a run (``--compile``, ``--amp``, ``--channels-last``, ``--sdpa-backend``) that profiling and
training share: what autocast computes in, which attention kernel runs and whether the compiler can run.
Importing it does not import torch (the command line checks options with it first). Training reaches them here without importing
the profiler; :mod:`attnzoo.profiling.prepare` is where profiling applies them to a block.
"""

from __future__ import annotations

import contextlib


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
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype(device))


def autocast_dtype(device: str):
    """What ``--amp`` computes in: bfloat16 on the CPU (its fast half type), float16 on CUDA."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.bfloat16


#: ``--sdpa-backend``: auto (torch chooses) or one of torch.nn.attention.SDPBackend's kernels.
SDPA_BACKENDS = {"auto": None, "math": "MATH", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "cudnn": "CUDNN_ATTENTION"}


def sdpa_backend(name: str):
    """The context that makes scaled_dot_product_attention use backend ``name`` only (a null context for
    auto). A kernel that the device or the inputs cannot take then fails with torch's reason."""
    if SDPA_BACKENDS.get(name) is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[name]))


def check_sdpa_backend(name: str) -> None:
    """Refuse (ConfigError) a backend this torch does not know."""
    from attnzoo.errors import ConfigError

    if name not in SDPA_BACKENDS:
        raise ConfigError(f"--sdpa-backend {name}: not one of {', '.join(SDPA_BACKENDS)}")
    if SDPA_BACKENDS[name] is None:
        return
    import torch

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401  (torch >= 2.3)
    except ImportError:
        raise ConfigError(f"--sdpa-backend {name} needs torch.nn.attention (torch 2.3 or newer); this is torch "
                          f"{torch.__version__}") from None
    if not hasattr(SDPBackend, SDPA_BACKENDS[name]):
        raise ConfigError(f"--sdpa-backend {name}: torch {torch.__version__} has no {SDPA_BACKENDS[name]} kernel")


def sdpa_kernel_chosen(args: tuple, kwargs: dict) -> str:
    """Which kernel scaled_dot_product_attention picks for these arguments under the current backend
    settings (torch's own dispatcher choice), as --sdpa-backend names it; "none" when no kernel can run."""
    import torch

    names = {v: k for k, v in SDPA_BACKENDS.items() if v}
    try:
        query, key, value = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")][len(args):])[:3]
        extra = {k: kwargs[k] for k in ("attn_mask", "dropout_p", "is_causal", "scale") if k in kwargs}
        chosen = torch._fused_sdp_choice(query, key, value, *args[3:6], **extra)
    except Exception:  # noqa: BLE001  (no viable kernel, or a torch without the private chooser)
        return "none"
    from torch.nn.attention import SDPBackend

    for member in names:
        if hasattr(SDPBackend, member) and int(getattr(SDPBackend, member)) == int(chosen):
            return names[member]
    return str(chosen)


#: ``--runtime``: what runs the forward, and the packages each needs beyond torch (the ``deploy`` extra).
#: onnxruntime and openvino run the ONNX file torch's exporters write (onnxscript is the dynamo exporter's).
RUNTIMES = {"eager": (), "torch.export": (), "onnxruntime": ("onnx", "onnxscript", "onnxruntime"),
            "openvino": ("onnx", "onnxscript", "openvino")}
#: The oldest torch each runtime works with: torch.export.Dim.AUTO (the dynamic H/W check) and
#: torch.onnx.export(dynamo=True) taking an exported program arrived in torch 2.6.
RUNTIME_TORCH = {"torch.export": "2.6", "onnxruntime": "2.6", "openvino": "2.6"}
#: Names people use for the runtimes, for "did you mean".
RUNTIME_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "export": "torch.export",
                   "torchexport": "torch.export", "dynamo": "torch.export"}


@contextlib.contextmanager
def watch_sdpa():
    """Record, in the list it yields, which kernel each scaled_dot_product_attention call under it picks
    (:func:`sdpa_kernel_chosen`; a TorchFunctionMode, so eager code only)."""
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    seen: list[str] = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.scaled_dot_product_attention:
                seen.append(sdpa_kernel_chosen(tuple(args), kwargs))
            return func(*args, **kwargs)

    with Watch():
        yield seen


def check_runtime(name: str) -> None:
    """Refuse (ConfigError, one line) a runtime attnzoo does not know (with "did you mean"), one whose packages
    are not installed (naming the ``deploy`` extra), or one this torch is too old for. Reads package metadata
    only: nothing is imported, so the command line checks it before torch."""
    import importlib.util
    from importlib import metadata

    from attnzoo.errors import ConfigError
    from attnzoo.versions import release

    if name not in RUNTIMES:
        from difflib import get_close_matches

        lower = name.strip().lower().replace("_", ".")
        if lower in RUNTIME_ALIASES:
            close = [RUNTIME_ALIASES[lower]]
        else:
            close = [k for k in RUNTIMES if lower and lower in k] or get_close_matches(lower, list(RUNTIMES), n=1,
                                                                                       cutoff=0.7)
        raise ConfigError(f"--runtime {name}: not one of {', '.join(RUNTIMES)}"
                          + (f"; did you mean '{close[0]}'?" if close else ""))
    missing = []
    for package in RUNTIMES[name]:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    if missing:
        raise ConfigError(f"--runtime {name} needs {', '.join(missing)}, not installed: "
                          "pip install 'attnzoo[deploy]' (the deploy extra)")
    needed = RUNTIME_TORCH.get(name)
    if needed is not None:
        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            return  # importing torch fails with its own message
        if release(torch_version) < release(needed):
            raise ConfigError(f"--runtime {name} needs torch {needed} or newer (torch.onnx.export(dynamo=True) and "
                              f"torch.export.Dim.AUTO); this is torch {torch_version}")


__all__ = ["RUNTIMES", "RUNTIME_TORCH", "SDPA_BACKENDS", "autocast", "autocast_dtype", "check_compiler",
           "check_runtime", "check_sdpa_backend", "sdpa_backend", "sdpa_kernel_chosen", "watch_sdpa"]
