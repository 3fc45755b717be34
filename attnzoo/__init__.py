"""attnzoo: a zoo and profiler of computer-vision attention blocks.

Listing and looking up cards never imports torch; ``create`` and ``profile`` do.

There is no ``sweep`` function here (it would be hidden by the ``attnzoo.sweep`` module of the same name):
``attnzoo sweep`` is a command; from Python, profile a grid and fit it::

    from attnzoo.sweep import fit_rows, grid_shapes, parse_values
    frame = attnzoo.profile("mha", grid_shapes((1, 64, 8, 8), "hw", parse_values("16,32,64")), mode="infer")
    fits = fit_rows(frame.to_dict("records"), "hw", ["macs", "fwd_ms"])
"""

from __future__ import annotations

from typing import Any, Sequence

from attnzoo.errors import AttnzooError, CardError, ConfigError, ShapeError, UnknownBlockError
from attnzoo.registry import BlockSpec, get_spec, list_blocks

__version__ = "0.1.0"
__all__ = ["AttnzooError", "BlockSpec", "CardError", "ConfigError", "ShapeError", "UnknownBlockError",
           "create", "get_spec", "list_blocks", "profile", "__version__"]


def create(name: str, shape: str | Sequence[int], *, registry: Sequence[str] = (), device: str = "cpu",
           dtype: Any = None, seed: int = 0, **overrides: Any):
    """Build block ``name`` for input ``shape``; returns ``(module, inputs)``, inputs a tuple of tensors.

    ``overrides`` replace the card's constructor arguments, e.g. ``create("cbam", (2, 64, 8, 8), reduction=8)``.
    """
    from attnzoo.build import create as _create

    return _create(get_spec(name, registry), shape, overrides, device=device, dtype=dtype, seed=seed)


def profile(names: str | Sequence[str], shapes: str | Sequence[int] | Sequence[str | Sequence[int]], *,
            device: str = "auto", dtype: str = "float32", mode: str = "both", min_time: float = 0.3,
            warmup: int = 3, threads: int | None = None, overrides: dict[str, Any] | None = None,
            registry: Sequence[str] = (), seed: int = 0, compile: bool = False, compile_mode: str | None = None,
            amp: bool = False, channels_last: bool = False):
    """Profile blocks (names or wildcards) at shapes; returns a pandas DataFrame, one row per block and shape.

    Columns: ``attnzoo.profiling.runner.COLUMNS`` (params, macs, flops, bytes, fwd_ms, train_ms, fwd_peak_mib,
    the roofline's of_limit, ... and where and how each row was measured); their units and meaning are in
    ``attnzoo.profiling.measurements``. ``compile``, ``amp`` and ``channels_last`` are the modes of ``--compile``,
    ``--amp`` and ``--channels-last``. One multiply-add is 1 MAC and
    2 FLOPs. A row that could not run has a ``status`` other than ``"ok"`` saying why; unknown names and
    malformed shapes raise :class:`AttnzooError` before anything runs.

    >>> attnzoo.profile("cbam", "2,64,32,32", mode="infer", min_time=0.2)  # doctest: +SKIP
    """
    from attnzoo.profiling.runner import ProfileOptions, profile_rows, to_frame

    names = [names] if isinstance(names, str) else list(names)
    if isinstance(shapes, str) or (len(shapes) > 0 and all(isinstance(d, int) for d in shapes)):
        shapes = [shapes]
    options = ProfileOptions(device=device, dtype=dtype, mode=mode, min_time=min_time, warmup=warmup, seed=seed,
                             threads=threads, compile=compile, compile_mode=compile_mode, amp=amp,
                             channels_last=channels_last)
    return to_frame(profile_rows(names, list(shapes), options, overrides, registry))
