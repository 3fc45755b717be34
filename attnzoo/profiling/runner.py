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
from typing import Any, Iterable, Mapping, Sequence

from attnzoo.errors import ConfigError, ProfilerError, ShapeError
from attnzoo.profiling.measurements import COLUMNS as _COLUMNS
from attnzoo.profiling.load import sample_load
from attnzoo.profiling.measurements import MEASUREMENTS, Calibration
from attnzoo.modes import check_compiler, check_runtime, check_sdpa_backend
from attnzoo.profiling.timing import threads_set as _threads
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
    input_scale: float = 1.0  # the inputs' standard deviation (the activations of a deep residual stream grow)
    sdpa_backend: str = "auto"  # scaled_dot_product_attention's kernel: auto, math, flash, efficient, cudnn
    runtime: str = "eager"  # what runs the forward: eager, torch.export, onnxruntime, openvino
    export_dir: str | None = None  # --export-dir: keep the exported files (BLOCK-SHAPE.onnx) there
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
        if not (isinstance(self.input_scale, (int, float)) and math.isfinite(self.input_scale)
                and self.input_scale > 0):
            raise ConfigError(f"--input-scale must be a positive finite number, got {self.input_scale}")
        check_sdpa_backend(self.sdpa_backend)
        self._check_runtime()
        if self.amp and self.dtype != "float32":
            raise ConfigError(f"--amp autocasts float32 weights to a half type; it cannot autocast --dtype {self.dtype} "
                              "(use --dtype float32 with --amp, or --dtype alone)")
        device = self.device.strip().lower()
        if not here:
            if device != "auto" and device.split(":")[0] not in ("cpu", "cuda"):
                raise ConfigError(f"device '{self.device}' is not one of cpu, cuda, cuda:N, auto")
            return dataclasses.replace(self, device=device)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and self.runtime in ("eager", "torch.export") else "cpu"
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

    def _check_runtime(self) -> None:
        """--runtime: known, installed, on a torch new enough (attnzoo.modes.check_runtime), and in a mode it
        can run: inference, without torch.compile or autocast; ONNX Runtime and OpenVINO on the CPU, from a
        plain layout and torch's own SDPA choice (what the exported graph holds)."""
        check_runtime(self.runtime)
        if self.runtime == "eager":
            if self.export_dir:
                raise ConfigError("--export-dir keeps the files a --runtime exports: give --runtime torch.export, "
                                  "onnxruntime or openvino")
            return
        flag = f"--runtime {self.runtime}"
        if self.mode != "infer":
            raise ConfigError(f"{flag} measures inference: use --mode infer (not {self.mode})")
        if self.compile:
            raise ConfigError(f"{flag} runs the exported graph; --compile is another way to run it: give one")
        if self.amp:
            raise ConfigError(f"{flag} exports the block in its --dtype; it takes no --amp (use --dtype)")
        if self.runtime in ("onnxruntime", "openvino"):
            device = self.device.strip().lower()
            if device not in ("cpu", "auto"):
                raise ConfigError(f"{flag} runs on the CPU here: use --device cpu (not {self.device})")
            if self.channels_last:
                raise ConfigError(f"{flag}: an ONNX graph has no memory format; --channels-last is eager's and "
                                  "torch.export's")
            if self.sdpa_backend != "auto":
                raise ConfigError(f"{flag}: --sdpa-backend chooses eager PyTorch's attention kernel, not the "
                                  "runtime's")

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

    from attnzoo._version import __version__
    from attnzoo.modes import autocast_dtype

    row: dict[str, Any] = {column: None for column in COLUMNS}
    row.update(block=name, shape=shape, status=OK, uncounted_ops="", mode=options.mode,
               overrides=_format_overrides(overrides),
               compile=(options.compile_mode or "default") if options.compile else "",
               amp=str(autocast_dtype(options.device)).removeprefix("torch.") if options.amp else "",
               channels_last=options.channels_last, input_scale=options.input_scale,
               sdpa_backend=options.sdpa_backend, runtime="" if options.runtime == "eager" else options.runtime,
               device=options.device, device_name=_device_name(options.device),
               dtype=options.dtype, threads=options.threads or torch.get_num_threads(), torch=torch.__version__,
               cuda_version=torch.version.cuda or "", attnzoo_version=__version__,
               timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    row.update(sample_load().fields())
    return row


def calibrate(options: ProfileOptions, fresh: bool = False) -> Calibration | None:
    """The device's ceilings for the roofline at ``options`` (device, dtype, autocast, threads): the compute
    ceiling (the best matmul and 3x3 convolution rates of the dtype the arithmetic runs in) and the bandwidth
    curve. None when no forward is measured. Read from the machine's cache (attnzoo.profiling.ceilings) and
    this process's memory; measured (each ceiling in a bounded time) and kept when absent, or with ``fresh``.

    On the CPU each ceiling is the faster of one thread and the row's threads: on a machine whose cores are
    busy, a multi-threaded copy can wait milliseconds for a descheduled thread, and a ceiling measured only
    then would sit below what the blocks achieve.
    """
    import torch

    from attnzoo.modes import autocast_dtype

    if options.mode == "train":
        return None
    dtypes = [options.torch_dtype] + ([autocast_dtype(options.device)] if options.amp else [])
    threads = options.threads or torch.get_num_threads()
    thread_counts = [threads] + ([1] if options.device == "cpu" and threads != 1 else [])
    memo = (options.device, tuple(str(d) for d in dtypes), tuple(thread_counts))
    if not fresh and memo in _CALIBRATIONS:
        return _CALIBRATIONS[memo]
    peaks, convs, curves, stamps = [], [], [], []
    try:
        for count in thread_counts:
            with _threads(count):
                # autocast runs the contractions in the half type: the faster ceiling binds
                for dtype in dtypes:
                    peaks.append(_ceiling("matmul", options.device, dtype, count, fresh, stamps))
                    convs.append(_ceiling("conv", options.device, dtype, count, fresh, stamps))
                curves.append(_ceiling("bandwidth", options.device, None, count, fresh, stamps))
    except Exception as exc:  # noqa: BLE001
        raise ProfilerError(f"measuring the device's ceilings failed: {type(exc).__name__}: {_one_line(exc)}") from exc
    curve = curves[0]
    for other in curves[1:]:
        curve = curve.faster(other)
    fastest = lambda found: max(found, key=lambda p: p.flops_per_s)  # noqa: E731
    found = Calibration(matmul=fastest(peaks), conv=fastest(convs), bandwidth=curve, measured_at=min(stamps),
                        remeasured=fresh)
    _CALIBRATIONS[memo] = found
    return found


_CALIBRATIONS: dict[tuple, Calibration] = {}


def _ceiling(kind: str, device: str, dtype, threads: int, fresh: bool, stamps: list[str]):
    """One ceiling at the current threads: from the cache, or measured and kept (bounded in time)."""
    from attnzoo.profiling import bandwidth, ceilings, efficiency

    measure = {
        "matmul": lambda: efficiency.measure_matmul_peak(device, dtype),
        "conv": lambda: efficiency.measure_conv_peak(device, dtype),
        "bandwidth": lambda: bandwidth.measure_bandwidth(device),
    }[kind]
    key = ceilings.make_key(kind, device, None if dtype is None else str(dtype).removeprefix("torch."), threads)
    record = ceilings.cached(key, lambda: ceilings.as_json(measure()), fresh=fresh)
    stamps.append(record["measured_at"])
    return ceilings.from_json(kind, record["value"])


def recalibrate_if_beaten(row: dict[str, Any], options: ProfileOptions, calibration: Calibration | None):
    """A row faster than its roofline allows (of_limit above 1.1: impossible by definition) means the
    ceilings were measured while the machine was busy: measure them once more for this run, keep the new
    values in the cache, say so, and give the row the roofline of the new ceilings."""
    from attnzoo.profiling.ceilings import note
    from attnzoo.profiling.measurements import roofline

    limit = row.get("of_limit")
    if calibration is None or limit is None or limit <= BEATEN or calibration.remeasured:
        return calibration  # a second beat in one run is the block's doing, not the ceilings'

    note(f"{row['block']} at {row['shape']} ran at {limit:.2f}x the device's ceilings measured "
         f"{calibration.measured_at}: they were too low (a busy machine?); measuring them again")
    fresh = calibrate(options, fresh=True)
    row.update(roofline(row.get("flops"), row.get("bytes_min"), row.get("fwd_ms"), fresh))
    return fresh


BEATEN = 1.1


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
    from attnzoo.profiling.runtimes import parity

    with _threads(options.threads):
        name = spec.name if spec is not None else "none"
        row = blank_row(name, format_shape(shape), options, overrides)
        before = Load(row["load"], row["busy"], row["cores"])  # sampled by blank_row, before the block is built
        prepared = None
        try:
            prepared = prepare(spec, shape, options, overrides, network)
            row.update(prepared.network_fields)
            if calibration is None and options.mode != "train":
                calibration = calibrate(options)  # once the block has built: a refusal measures nothing
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
            recalibrate_if_beaten(row, options, calibration)
            row["status"] = parity(row, options) or row["status"]  # a runtime whose output differs has failed
        except BlockFailure as failure:
            if options.raise_errors:
                raise failure.error from None
            row.update(getattr(failure.error, "fields", None) or {})  # a runtime's columns so far (export ...)
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
    from attnzoo.profiling.runtimes import RuntimeFailure

    if isinstance(exc, RuntimeFailure):  # already the one-line reason, naming the operator
        return f"error: {stage} failed: {_one_line(exc)}"
    detail = _one_line(exc) or type(exc).__name__
    return f"error: {stage} failed: {type(exc).__name__}: {detail}"


def shape_refusals(units: Sequence[Any]) -> dict[str, str]:
    """The units whose block cannot take their shape, by id, with the block's own reason, found without
    measuring anything: each block is built on the meta device (no memory, no ceilings), so its
    constructor's checks speak (channels a head count does not divide, a layout it does not take). What only
    a forward could tell is left to the row."""
    import torch

    from attnzoo.build import build_module
    from attnzoo.registry import get_spec

    refused: dict[str, str] = {}
    seen: dict[tuple, str | None] = {}
    for unit in units:
        if unit.kind != "profile" or unit.network is not None:
            continue
        point = (unit.block, unit.shape, unit.overrides, unit.registry)
        if point not in seen:
            try:
                with torch.device("meta"):
                    build_module(get_spec(unit.block, unit.registry), unit.shape, unit.overrides_dict)
                seen[point] = None
            except (ShapeError, ConfigError) as exc:
                seen[point] = str(exc)
            except Exception:  # noqa: BLE001  (a constructor that cannot run on meta: the row will tell)
                seen[point] = None
        if seen[point] is not None:
            refused[unit.id] = seen[point]
    return refused


def refuse_if_none_can_run(units: Sequence[Any]) -> None:
    """Raise ShapeError, before any measurement, when no unit's block can take its shape (one named block
    at a shape it refuses); when some can, the others become rows that say why."""
    refused = shape_refusals(units)
    if units and len(refused) == len(units):
        reasons = list(dict.fromkeys(refused.values()))
        more = f" (and {len(reasons) - 1} more like it)" if len(reasons) > 1 else ""
        raise ShapeError(reasons[0] + more)


#: Options added after units were first written: left out of a unit's settings (and so of its id) at their
#: default, so that the units of files written before keep their ids (they resume and merge as before).
LATER_OPTIONS = {"input_scale": 1.0, "sdpa_backend": "auto", "runtime": "eager", "export_dir": None}


def unit_settings(options: ProfileOptions) -> dict[str, Any]:
    """The settings a profile unit carries (and its id is derived from): every option but --debug's, the
    later ones (LATER_OPTIONS) only where they differ from their default."""
    return {key: value for key, value in dataclasses.asdict(options).items()
            if key != "raise_errors" and not (key in LATER_OPTIONS and value == LATER_OPTIONS[key])}


def plan_units(names: Iterable[str], shapes: Iterable[str | Sequence[int]], options: ProfileOptions,
               overrides: Mapping[str, Any] | None = None, registry: Sequence[str | os.PathLike] = (),
               networks: Sequence[str] = (), placement: str | None = None,
               stages: str | Sequence[int] | None = None) -> list:
    """The units of a profile: every block in ``names`` (names or wildcards) at every shape, in that order.
    ``options`` must be checked. Raises AttnzooError for an unknown block or a malformed shape. With
    ``networks`` (names or wildcards): network units (attnzoo.profiling.networks.plan_network_units)."""
    from attnzoo.build import parse_shape
    from attnzoo.registry import resolve_names
    from attnzoo.unit import Unit

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
    """Measure one profile unit (the runner of units of kind "profile"): a block alone, a plain network
    (block "none"), or a block placed in a network (``skipped`` with why when the network cannot hold it).
    The device's ceilings are the runner's own (:func:`calibrate`), wherever the unit runs."""
    from attnzoo.registry import get_spec

    options = ProfileOptions(**unit.settings_dict, raise_errors=context.raise_errors)
    if options.threads is None and context.threads is not None:
        options = dataclasses.replace(options, threads=context.threads)
    options = options.checked()  # the device resolved where the unit runs (a no-op for units planned here)
    if options.compile and context.threads is not None:
        _compile_threads(context.threads)
    if unit.network is None:
        return profile_one(get_spec(unit.block, unit.registry), unit.shape, options, unit.overrides_dict)
    return _network_row(unit, options)


def _compile_threads(threads: int) -> None:
    """Inductor's compile workers limited to the CPUs the executor gave the unit (a Ray task's), not the
    machine's."""
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = str(threads)
    try:
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = threads  # already imported in a reused worker
    except Exception:  # noqa: BLE001  (an old torch without the knob: its default stands)
        pass


def setup_node(unit, context) -> None:
    """The profiler's per-node work on a cluster: the node's ceilings for ``unit``'s settings, measured (or
    read from the node's cache) before units like it time anything there."""
    options = ProfileOptions(**unit.settings_dict)
    if options.threads is None and context.threads is not None:
        options = dataclasses.replace(options, threads=context.threads)
    calibrate(options.checked())


def _network_row(unit, options: ProfileOptions) -> dict[str, Any]:
    from attnzoo.networks.build import NetworkPlan
    from attnzoo.networks.cards import choose_placement, get_network
    from attnzoo.profiling.networks import SKIPPED
    from attnzoo.registry import get_spec

    card = get_network(unit.network, unit.registry)
    if unit.block == "none":
        return profile_one(None, unit.shape, options, None, network=NetworkPlan(card))
    spec = get_spec(unit.block, unit.registry)
    where, why = choose_placement(spec, card, unit.placement)
    if where is None:
        row = blank_row(spec.name, unit.shape_text, options, unit.overrides_dict)
        row.update(status=f"{SKIPPED}: {why}", network=card.name, placement=unit.placement or "")
        return row
    stages = tuple(unit.stages) if unit.stages is not None else None
    return profile_one(spec, unit.shape, options, unit.overrides_dict, network=NetworkPlan(card, where, stages))


def failed(row: Mapping[str, Any]) -> bool:
    """A row that could not run; a ``skipped`` row (a block a network cannot hold) is not a failure."""
    status = str(row.get("status"))
    return status != OK and not status.startswith("skipped")


__all__ = ["COLUMNS", "COMPILE_MODES", "DTYPES", "MODES", "ProfileOptions", "ProfilerError", "blank_row", "calibrate",
           "failed", "plan_units", "profile_one", "refuse_if_none_can_run", "run_unit", "setup_node",
           "shape_refusals", "unit_settings"]
