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

from attnzoo.errors import ConfigError, ProfilerError, ShapeError
from attnzoo.profiling.measurements import COLUMNS as _COLUMNS
from attnzoo.profiling.load import sample_load
from attnzoo.profiling.measurements import MEASUREMENTS, Calibration
from attnzoo.modes import check_compiler
from attnzoo.versions import check_supported

#: Every row has these keys, in this order (see attnzoo.profiling.measurements for units and meaning).
COLUMNS = _COLUMNS

MODES = ("infer", "train", "both")
DTYPES = ("float32", "float16", "bfloat16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
OK = "ok"


@dataclass(frozen=True)
class ProfileOptions:
    """How to measure. ``device`` is cpu, cuda, cuda:N or auto (CUDA when available)."""

    device: str = "auto"
    dtype: str = "float32"
    mode: str = "both"  # infer: forward only; train: forward + backward; both
    min_time: float = 0.3  # seconds of timed calls per measurement (torch.utils.benchmark uses 0.2)
    warmup: int = 3  # calls before timing
    seed: int = 0  # for the example inputs
    threads: int | None = None  # CPU threads (torch.set_num_threads) while measuring; None: torch's default
    compile: bool = False  # torch.compile the block
    compile_mode: str | None = None  # torch.compile's mode (default, reduce-overhead, max-autotune, ...)
    amp: bool = False  # autocast: bfloat16 on CPU, float16 on CUDA (the weights stay in dtype)
    channels_last: bool = False  # block and 4-D inputs in channels-last memory format
    raise_errors: bool = False  # re-raise a row's error instead of recording it (for debugging)

    def checked(self, here: bool = True) -> "ProfileOptions":
        """A copy with ``device`` resolved; raises ConfigError for a bad value (or a torch attnzoo does not
        support). With ``here`` False (the units run on other machines) the values are checked but the device
        is left as given, for the machine that measures to resolve."""
        check_supported()
        import torch

        if self.mode not in MODES:
            raise ConfigError(f"mode '{self.mode}' is not one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype '{self.dtype}' is not one of {', '.join(DTYPES)}")
        if not (self.min_time > 0 and math.isfinite(self.min_time)):
            raise ConfigError(f"min_time must be a positive, finite number of seconds, got {self.min_time}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.compile_mode not in (None, *COMPILE_MODES):
            raise ConfigError(f"compile mode '{self.compile_mode}' is not one of {', '.join(COMPILE_MODES)}")
        if self.compile_mode is not None and not self.compile:
            raise ConfigError("--compile-mode needs --compile")
        if self.amp and self.dtype != "float32":
            raise ConfigError(f"--amp autocasts float32 weights to a half type; it cannot autocast --dtype {self.dtype} "
                              "(use --dtype float32 with --amp, or --dtype alone)")
        device = self.device.strip().lower()
        if not here:
            if device != "auto" and device.split(":")[0] not in ("cpu", "cuda"):
                raise ConfigError(f"device '{self.device}' is not one of cpu, cuda, cuda:N, auto")
            return dataclasses.replace(self, device=device)
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
        if self.compile:
            check_compiler(parsed.type)
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


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _format_overrides(overrides: Mapping[str, Any] | None) -> str:
    return ";".join(f"{key}={value}" for key, value in sorted((overrides or {}).items()))


def blank_row(name: str, shape: str, options: ProfileOptions,
              overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A row with the block, shape and where it is measured filled in and every measurement empty (ok).
    ``threads`` is the run's (``options.threads``), else torch's now; ``load``, ``busy`` and ``cores`` the
    machine's load now (:func:`profile_one` records the busier of before and after its measurements)."""
    import datetime

    import torch

    from attnzoo import __version__
    from attnzoo.modes import autocast_dtype

    row: dict[str, Any] = {column: None for column in COLUMNS}
    row.update(block=name, shape=shape, status=OK, uncounted_ops="", mode=options.mode,
               overrides=_format_overrides(overrides),
               compile=(options.compile_mode or "default") if options.compile else "",
               amp=str(autocast_dtype(options.device)).removeprefix("torch.") if options.amp else "",
               channels_last=options.channels_last, device=options.device, device_name=_device_name(options.device),
               dtype=options.dtype, threads=options.threads or torch.get_num_threads(), torch=torch.__version__,
               cuda_version=torch.version.cuda or "", attnzoo_version=__version__,
               timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    row.update(sample_load().fields())
    return row


def calibrate(options: ProfileOptions) -> Calibration | None:
    """The device's ceilings for the roofline, measured once per process and (device, dtype, threads):
    the compute ceiling (the best matmul and 3x3 convolution rates of the dtype the arithmetic runs in) and
    the bandwidth curve. None when no
    forward is measured. Run before the rows, so its failure is the profiler's, not a row's.

    On the CPU each ceiling is the faster of one thread and the row's threads: on a machine whose cores are
    busy, a multi-threaded copy can wait milliseconds for a descheduled thread, and a ceiling measured only
    then would sit below what the blocks achieve.
    """
    from attnzoo.profiling.bandwidth import bandwidth_curve
    from attnzoo.profiling.efficiency import conv_peak, matmul_peak
    from attnzoo.modes import autocast_dtype

    if options.mode == "train":
        return None
    dtypes = [options.torch_dtype] + ([autocast_dtype(options.device)] if options.amp else [])
    thread_counts = [options.threads] + ([1] if options.device == "cpu" else [])
    peaks, convs, curves = [], [], []
    try:
        for threads in thread_counts:
            with _threads(threads):
                # autocast runs the contractions in the half type: the faster ceiling binds
                peaks += [matmul_peak(options.device, dtype) for dtype in dtypes]
                convs += [conv_peak(options.device, dtype) for dtype in dtypes]
                curves.append(bandwidth_curve(options.device))
    except Exception as exc:  # noqa: BLE001
        raise ProfilerError(f"measuring the device's ceilings failed: {type(exc).__name__}: {_one_line(exc)}") from exc
    curve = curves[0]
    for other in curves[1:]:
        curve = curve.faster(other)
    fastest = lambda found: max(found, key=lambda p: p.flops_per_s)  # noqa: E731
    return Calibration(matmul=fastest(peaks), conv=fastest(convs), bandwidth=curve)


class _threads:
    """Set torch's CPU threads for a while (None leaves them)."""

    def __init__(self, threads: int | None):
        self.threads = threads

    def __enter__(self):
        import torch

        self.saved = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.saved)


def profile_one(spec, shape: Sequence[int], options: ProfileOptions, overrides: Mapping[str, Any] | None = None,
                calibration: Calibration | None = None, network=None) -> dict[str, Any]:
    """Measure one block at one shape. ``options`` must have gone through :meth:`ProfileOptions.checked`;
    ``calibration`` defaults to :func:`calibrate` (cached). With ``network`` (an
    :class:`attnzoo.networks.build.NetworkPlan`) the row is that network with the block placed in it
    (``spec`` None: the plain network, block "none"), and ``shape`` is the network's input.

    A failure of the block (build, forward, training step, compilation, out of memory) is the row's
    ``status``; any other failure inside a measurement is a bug of attnzoo's and raises ProfilerError.
    """
    from attnzoo.build import format_shape
    from attnzoo.profiling.load import Load, worst
    from attnzoo.profiling.prepare import BlockFailure, prepare

    if calibration is None and options.mode != "train":
        calibration = calibrate(options)
    with _threads(options.threads):
        name = spec.name if spec is not None else "none"
        row = blank_row(name, format_shape(shape), options, overrides)
        before = Load(row["load"], row["busy"], row["cores"])  # sampled by blank_row, before the block is built
        prepared = None
        try:
            prepared = prepare(spec, shape, options, overrides, network)
            row.update(prepared.network_fields)
            for measurement in MEASUREMENTS:
                if not measurement.wanted(options.mode):
                    continue
                try:
                    row.update(measurement.run(prepared, calibration, row))
                except Exception as exc:  # noqa: BLE001
                    if _is_oom(exc):
                        raise BlockFailure(measurement.name, exc) from exc
                    raise ProfilerError(f"{measurement.name} failed for {name} at {row['shape']}: "
                                        f"{type(exc).__name__}: {_one_line(exc)}") from exc
        except BlockFailure as failure:
            if options.raise_errors:
                raise failure.error
            row["status"] = _status(failure.error, failure.stage)
        finally:
            row.update(worst(before, sample_load()).fields())
            del prepared
            _free(options.device)
    return row


def _status(exc: BaseException, stage: str) -> str:
    if _is_oom(exc):
        return f"oom: out of memory in {stage}: {_one_line(exc, 200) or type(exc).__name__}"
    if isinstance(exc, (ShapeError, ConfigError)):
        return f"error: {_one_line(exc)}"
    detail = _one_line(exc) or type(exc).__name__
    return f"error: {stage} failed: {type(exc).__name__}: {detail}"


def unit_settings(options: ProfileOptions) -> dict[str, Any]:
    """The settings a profile unit carries (and its id is derived from): every option but --debug's."""
    return {key: value for key, value in dataclasses.asdict(options).items() if key != "raise_errors"}


def plan_units(names: Iterable[str], shapes: Iterable[str | Sequence[int]], options: ProfileOptions,
               overrides: Mapping[str, Any] | None = None, registry: Sequence[str | os.PathLike] = (),
               networks: Sequence[str] = (), placement: str | None = None,
               stages: str | Sequence[int] | None = None) -> list:
    """The units of a profile: every block in ``names`` (names or wildcards) at every shape, in that order.
    ``options`` must be checked. Raises AttnzooError for an unknown block or a malformed shape. With
    ``networks`` (names or wildcards): network units (attnzoo.profiling.networks.plan_network_units)."""
    from attnzoo.build import parse_shape
    from attnzoo.campaign.units import Unit
    from attnzoo.registry import resolve_names

    names = list(names)
    if not names and not networks:
        raise ConfigError("no block names given")
    resolved = resolve_names(names, registry)
    dims = [parse_shape(shape) for shape in shapes]
    if not dims:
        raise ShapeError("no shape given: pass --shape B,C,H,W (or B,N,C for token blocks)")
    settings = unit_settings(options)
    if networks:
        from attnzoo.profiling.networks import plan_network_units

        return plan_network_units(names, resolved, dims, networks, placement, stages, settings, overrides, registry)
    if placement is not None or stages is not None:
        raise ConfigError("--placement and --stages need --network")
    return [Unit.make("profile", name, shape, settings, overrides, registry=[str(r) for r in registry])
            for name in resolved for shape in dims]


def run_unit(unit, context) -> dict[str, Any]:
    """Measure one profile unit (attnzoo.campaign's runner for units of kind "profile")."""
    from attnzoo.registry import get_spec

    options = ProfileOptions(**unit.settings_dict, raise_errors=context.raise_errors)
    if options.threads is None and context.threads is not None:
        options = dataclasses.replace(options, threads=context.threads)
    options = options.checked()  # the device resolved where the unit runs (a no-op for units planned here)
    calibration = context.calibration(options) if context.calibration is not None else None
    if unit.network is not None:
        from attnzoo.profiling.networks import run_network_unit

        return run_network_unit(unit, options, calibration)
    return profile_one(get_spec(unit.block, unit.registry), unit.shape, options, unit.overrides_dict, calibration)


def profile_rows(names: Iterable[str], shapes: Iterable[str | Sequence[int]], options: ProfileOptions | None = None,
                 overrides: Mapping[str, Any] | None = None, registry: Sequence[str | os.PathLike] = (),
                 on_start: Callable[[str, str], None] | None = None, networks: Sequence[str] = (),
                 placement: str | None = None, stages: str | Sequence[int] | None = None) -> "RowIterator":
    """Rows for every block in ``names`` (names or wildcards) at every shape, in that order.

    Names, shapes and options are checked now (raising AttnzooError); the returned iterator then measures
    one row per ``next``. ``on_start(block, shape)`` is called before each row (for progress). With
    ``networks`` (names or wildcards) the rows are network rows (attnzoo.profiling.networks): per network
    and shape, the plain network's row, then one per block placed by ``placement`` in ``stages``, with the
    differences to the plain row.
    """
    from attnzoo.campaign.executors import Local

    checked = (options or ProfileOptions()).checked()
    units = plan_units(names, shapes, checked, overrides, registry, networks, placement, stages)
    calibrate(checked)  # before the rows: its failure is the profiler's, not a row's

    class _Start:
        def started(self, unit) -> None:
            if on_start is not None:
                on_start(unit.block, unit.shape_text)

        def finished(self, unit, row) -> None:
            pass

    rows = Local(raise_errors=checked.raise_errors).run(units, progress=_Start())
    if networks:
        from attnzoo.profiling.networks import with_deltas

        rows = with_deltas(rows)
    return RowIterator(rows, total=len(units))


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
    """A row that could not run; a ``skipped`` row (a block a network cannot hold) is not a failure."""
    status = str(row.get("status"))
    return status != OK and not status.startswith("skipped")


def to_frame(rows: Iterable[Mapping[str, Any]]):
    """Rows as a pandas DataFrame with the columns of :data:`COLUMNS`."""
    import pandas as pd

    return pd.DataFrame([dict(row) for row in rows], columns=list(COLUMNS))


__all__ = ["COLUMNS", "COMPILE_MODES", "DTYPES", "MODES", "ProfileOptions", "ProfilerError", "RowIterator", "blank_row",
           "calibrate", "failed", "plan_units", "profile_one", "profile_rows", "run_unit", "to_frame", "unit_settings"]
