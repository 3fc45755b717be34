"""Rows: one per block and shape, with parameters, MACs / FLOPs, latency and peak memory.

:func:`profile_rows` checks names, shapes and options first (an unknown block or a malformed shape raises
an :class:`~attnzoo.errors.AttnzooError` before anything runs), then yields each row as it finishes, so a
caller can print or write rows as they come. A row that cannot run (a shape the block cannot take, an
error in its forward, out of memory) carries the reason in ``status`` and the run goes on.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from attnzoo.errors import ConfigError, ShapeError

#: Every row has these keys, in this order. Units are in the names; counts (params, macs, flops, runs)
#: are plain integers. One multiply-add is 1 MAC and 2 FLOPs. ``efficiency`` is the forward's achieved
#: FLOP/s (flops / fwd_ms) over ``device_gflops``, the device's measured matmul GFLOP/s for the dtype
#: (see attnzoo.profiling.efficiency); both are None when the forward is not timed.
COLUMNS = ("block", "shape", "status", "params", "trainable_params", "macs", "flops", "uncounted_ops", "counter",
           "fwd_ms", "fwd_iqr_ms", "fwd_runs", "train_ms", "train_iqr_ms", "train_runs",
           "fwd_peak_mib", "train_peak_mib", "efficiency", "device_gflops", "device", "dtype", "threads",
           "torch")

MODES = ("infer", "train", "both")
DTYPES = ("float32", "float16", "bfloat16")
OK = "ok"


@dataclass(frozen=True)
class ProfileOptions:
    """How to measure. ``device`` is cpu, cuda, cuda:N or auto (CUDA when available)."""

    device: str = "auto"
    dtype: str = "float32"
    mode: str = "both"  # infer: forward only; train: forward + backward; both
    min_time: float = 1.0  # seconds of timed calls per measurement
    warmup: int = 3  # calls before timing
    seed: int = 0  # for the example inputs
    threads: int | None = None  # CPU threads (torch.set_num_threads) while measuring; None: torch's default
    raise_errors: bool = False  # re-raise a row's error instead of recording it (for debugging)

    def checked(self) -> "ProfileOptions":
        """A copy with ``device`` resolved; raises ConfigError for a bad value."""
        import torch

        if self.mode not in MODES:
            raise ConfigError(f"mode '{self.mode}' is not one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype '{self.dtype}' is not one of {', '.join(DTYPES)}")
        if not self.min_time > 0:
            raise ConfigError(f"min_time must be positive, got {self.min_time}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        device = self.device.strip().lower()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            parsed = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"device '{self.device}' is not one of cpu, cuda, cuda:N, auto") from None
        if parsed.type not in ("cpu", "cuda"):
            raise ConfigError(f"device '{self.device}' is not one of cpu, cuda, cuda:N, auto")
        if parsed.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("device 'cuda' asked for, but CUDA is not available (use --device cpu or auto)")
            if parsed.index is not None and parsed.index >= torch.cuda.device_count():
                raise ConfigError(f"device '{device}' does not exist ({torch.cuda.device_count()} CUDA devices)")
        return dataclasses.replace(self, device=device)

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def _one_line(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def _tensor_leaves(value: Any) -> list:
    import torch
    from torch.utils._pytree import tree_leaves

    return [v for v in tree_leaves(value) if isinstance(v, torch.Tensor)]


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def blank_row(name: str, shape: str, options: ProfileOptions) -> dict[str, Any]:
    """A row with the block, shape and machine filled in and every measurement empty (status ok)."""
    import torch

    row: dict[str, Any] = {column: None for column in COLUMNS}
    row.update(block=name, shape=shape, status=OK, uncounted_ops="", device=options.device,
               dtype=options.dtype, threads=torch.get_num_threads(), torch=torch.__version__)
    if options.device.startswith("cuda"):
        row["device"] = f"{options.device} ({torch.cuda.get_device_name(torch.device(options.device))})"
    return row


def profile_one(spec, shape: Sequence[int], options: ProfileOptions,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Measure one block at one shape. ``options`` must have gone through :meth:`ProfileOptions.checked`."""
    import torch

    from attnzoo.build import create, format_shape
    from attnzoo.profiling.flops import count_macs
    from attnzoo.profiling.memory import MIB, peak_bytes
    from attnzoo.profiling.timing import time_callable

    default_threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    row = blank_row(spec.name, format_shape(shape), options)
    stage = "build"  # which measurement is running, to say where a row failed
    module = inputs = None
    try:
        module, inputs = create(spec, shape, dict(overrides or {}), device=options.device,
                                dtype=options.torch_dtype, seed=options.seed)
        row["params"] = sum(p.numel() for p in module.parameters())
        row["trainable_params"] = sum(p.numel() for p in module.parameters() if p.requires_grad)

        stage = "forward"
        module.eval()
        with torch.inference_mode():
            module(*inputs)  # fails here, with the block's own message, when it cannot take the shape

        stage = "counting MACs"
        count = count_macs(module, inputs)
        row["macs"], row["flops"] = count.macs, count.flops
        row["uncounted_ops"], row["counter"] = "; ".join(count.uncounted), count.counter

        if options.mode in ("infer", "both"):
            stage = "forward timing"
            module.eval()
            with torch.inference_mode():
                timing = time_callable(lambda: module(*inputs), options.device, options.min_time, options.warmup)
                row.update(fwd_ms=_ms(timing.median_ms), fwd_iqr_ms=_ms(timing.iqr_ms),
                           fwd_runs=timing.runs)
                stage = "forward memory"
                row["fwd_peak_mib"] = round(peak_bytes(lambda: module(*inputs), options.device) / MIB, 4)
            stage = "device matmul FLOP/s"
            row.update(_efficiency(row, options))

        if options.mode in ("train", "both"):
            stage = "training step"
            module.train()
            step, clear = _training_step(module, inputs)
            timing = time_callable(step, options.device, options.min_time, options.warmup)
            row.update(train_ms=_ms(timing.median_ms), train_iqr_ms=_ms(timing.iqr_ms),
                       train_runs=timing.runs)
            stage = "training-step memory"
            clear()  # gradients left by the last step would otherwise count in the baseline
            row["train_peak_mib"] = round(peak_bytes(step, options.device) / MIB, 4)
            clear()
    except Exception as exc:  # noqa: BLE001  (a row records its failure and the run goes on)
        if options.raise_errors:
            raise
        row["status"] = _status(exc, stage)
    finally:
        del module, inputs
        _free(options.device)
        torch.set_num_threads(default_threads)
    return row


def _efficiency(row: Mapping[str, Any], options: ProfileOptions) -> dict[str, Any]:
    """The efficiency columns of a row whose forward was timed (the matmul peak is cached per process)."""
    from attnzoo.profiling.efficiency import efficiency, matmul_peak

    if row["fwd_ms"] is None:
        return {}
    peak = matmul_peak(options.device, options.torch_dtype)
    value = efficiency(row["flops"], row["fwd_ms"] / 1e3, peak)
    return {"efficiency": None if value is None else round(value, 4), "device_gflops": round(peak.gflops, 1)}


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _status(exc: BaseException, stage: str) -> str:
    if _is_oom(exc):
        return f"oom: out of memory in {stage}: {_one_line(exc, 200) or type(exc).__name__}"
    if isinstance(exc, (ShapeError, ConfigError)):
        return f"error: {_one_line(exc)}"
    detail = _one_line(exc) or type(exc).__name__
    return f"error: {stage} failed: {type(exc).__name__}: {detail}"


def _training_step(module, inputs) -> tuple[Callable[[], None], Callable[[], None]]:
    """A forward and a backward as inside a network: gradients for the weights and for the inputs.

    Returns ``(step, clear)``; ``clear`` drops the gradients (``step`` does it first too).
    """
    train_inputs = tuple(x.detach().requires_grad_(x.is_floating_point()) for x in inputs)
    leaves = [p for p in module.parameters() if p.requires_grad] + [x for x in train_inputs if x.requires_grad]

    def clear() -> None:
        for tensor in leaves:
            tensor.grad = None

    def step() -> None:
        clear()
        outputs = [t for t in _tensor_leaves(module(*train_inputs)) if t.requires_grad]
        if not outputs:
            raise RuntimeError("no output of the block depends on a trainable tensor")
        loss = outputs[0].sum()
        for t in outputs[1:]:
            loss = loss + t.sum()
        loss.backward()

    return step, clear


def profile_rows(names: Iterable[str], shapes: Iterable[str | Sequence[int]], options: ProfileOptions | None = None,
                 overrides: Mapping[str, Any] | None = None, registry: Sequence[str | os.PathLike] = (),
                 on_start: Callable[[str, str], None] | None = None) -> "RowIterator":
    """Rows for every block in ``names`` (names or wildcards) at every shape, in that order.

    Names, shapes and options are checked now (raising AttnzooError); the returned iterator then measures
    one row per ``next``. ``on_start(block, shape)`` is called before each row (for progress).
    """
    from attnzoo.build import format_shape, parse_shape
    from attnzoo.registry import get_spec, resolve_names

    names = list(names)
    if not names:
        raise ConfigError("no block names given")
    resolved = resolve_names(names, registry)
    specs = [get_spec(name, registry) for name in resolved]
    dims = [parse_shape(shape) for shape in shapes]
    if not dims:
        raise ShapeError("no shape given: pass --shape B,C,H,W (or B,N,C for token blocks)")
    checked = (options or ProfileOptions()).checked()
    overrides = dict(overrides or {})

    def rows() -> Iterator[dict[str, Any]]:
        for spec in specs:
            for shape in dims:
                if on_start is not None:
                    on_start(spec.name, format_shape(shape))
                yield profile_one(spec, shape, checked, overrides)

    return RowIterator(rows(), total=len(specs) * len(dims))


class RowIterator(Iterator[dict]):
    """The rows still to measure; ``total`` says how many there are in all."""

    def __init__(self, rows: Iterator[dict[str, Any]], total: int):
        self._rows = rows
        self.total = total

    def __iter__(self) -> "RowIterator":
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._rows)


def failed(row: Mapping[str, Any]) -> bool:
    return row.get("status") != OK


def to_frame(rows: Iterable[Mapping[str, Any]]):
    """Rows as a pandas DataFrame with the columns of :data:`COLUMNS`."""
    import pandas as pd

    return pd.DataFrame([dict(row) for row in rows], columns=list(COLUMNS))


__all__ = ["COLUMNS", "DTYPES", "MODES", "ProfileOptions", "RowIterator", "blank_row", "failed", "profile_one",
           "profile_rows", "to_frame"]
