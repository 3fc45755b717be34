"""The one place where a block is prepared for a measurement mode: eager or compiled, autocast, channels-last.

:func:`prepare` builds the block at a shape and returns a :class:`Prepared`: the block as built (``eager``,
which the counters inspect), the module that is timed (``module``: the compiled one under ``--compile``),
the example inputs in the right memory format, and the two calls every timing and memory measurement uses:
:meth:`Prepared.forward` and :meth:`Prepared.train_step`. A measurement never applies a mode itself.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn
from torch.utils._pytree import tree_leaves

from attnzoo.errors import BlockFailure
from attnzoo.modes import autocast, sdpa_backend, watch_sdpa


@dataclass
class Prepared:
    eager: nn.Module
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    options: Any  # the checked ProfileOptions
    batch: int
    compile_s: float | None = None
    compile_cache: str = ""  # warm: the compile found all it needed in Inductor's on-disk cache; cold: it wrote to it
    # A network row: the qualified names of the placed blocks (empty for a block row), and their MACs by module.
    attention: tuple[str, ...] = ()
    macs_by_module: dict[str, int] = field(default_factory=dict)
    network_fields: dict[str, Any] = field(default_factory=dict)  # network, placement, stages, inserted
    # The row's reference for numerical error: () -> (eager float32 module, float32 inputs), the same weights
    # and the same input values as the measured module's (upcast where the row runs in a half type).
    reference: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]] | None = field(default=None, repr=False)
    sdpa_kernel: str | None = None  # the scaled_dot_product_attention kernel(s) the eager forward picked
    # --runtime: the deploy columns (export, exporter, opset, ...; empty for eager), whether attnzoo's memory
    # tracker sees the runtime's allocations (ONNX Runtime's and OpenVINO's are their own), the files kept.
    deploy_fields: dict[str, Any] = field(default_factory=dict)
    memory_tracked: bool = True
    exported_files: list = field(default_factory=list)
    _train: tuple[Callable[[], None], Callable[[], None]] | None = field(default=None, repr=False)

    @property
    def device(self) -> str:
        return self.options.device

    @contextlib.contextmanager
    def mode_context(self):
        """What the row's mode runs under: autocast (``--amp``) and the SDPA backend (``--sdpa-backend``),
        entered when the ``with`` is (a context made and entered later must not be on already)."""
        with autocast(self.device, self.options.amp), sdpa_backend(getattr(self.options, "sdpa_backend", "auto")):
            yield

    def forward(self) -> Any:
        """One forward of the measured module (call it under ``torch.inference_mode()`` for inference)."""
        with self.mode_context():
            return self.module(*self.inputs)

    def train_step(self) -> None:
        """A forward and a backward as inside a network: gradients for the weights and for the inputs."""
        self._training()[0]()

    def clear_grads(self) -> None:
        self._training()[1]()

    def _training(self):
        if self._train is None:
            self._train = _training_step(self.module, self.inputs, self.mode_context)
        return self._train


def _training_step(module: nn.Module, inputs: Sequence[torch.Tensor], mode_context) -> tuple[Callable, Callable]:
    train_inputs = tuple(x.detach().requires_grad_(x.is_floating_point()) for x in inputs)
    leaves = [p for p in module.parameters() if p.requires_grad] + [x for x in train_inputs if x.requires_grad]

    def clear() -> None:
        for tensor in leaves:
            tensor.grad = None

    def step() -> None:
        clear()
        with mode_context():
            outputs = [t for t in tree_leaves(module(*train_inputs)) if isinstance(t, torch.Tensor) and t.requires_grad]
        if not outputs:
            raise RuntimeError("no output of the block depends on a trainable tensor")
        loss = outputs[0].float().sum()
        for t in outputs[1:]:
            loss = loss + t.float().sum()
        loss.backward()

    return step, clear


def _timed(fn: Callable[[], Any], device: str) -> float:
    from attnzoo.profiling.timing import _synchronizer

    sync = _synchronizer(device)  # the timing module's: CUDA kernels are asynchronous
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _compile_cache_files() -> int | None:
    """How many files Inductor's on-disk cache holds (None when it cannot be found). The cache is per
    machine and kept across processes, so a block compiled before on this node compiles faster: a compile
    that adds no file found everything there."""
    import os

    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir  # torch >= 2.4
    except ImportError:
        try:
            from torch._inductor.utils import cache_dir  # older torch
        except ImportError:
            return None
    try:
        root = cache_dir()
    except Exception:  # noqa: BLE001
        return None
    return sum(len(files) for _, _, files in os.walk(root)) if os.path.isdir(root) else 0


def prepare(spec, shape: Sequence[int], options, overrides: Mapping[str, Any] | None = None,
            network=None) -> Prepared:
    """Build ``spec`` at ``shape`` for ``options`` (checked ProfileOptions) and run it once in every mode
    the row will measure, so that a failure of the block surfaces here as :class:`BlockFailure` (and
    compilation happens here, timed, outside the measurements). With ``network`` (a
    :class:`attnzoo.networks.build.NetworkPlan`) the module is that network at input ``shape`` with
    ``spec``'s block placed in it (``spec`` None: the plain network)."""
    from attnzoo.build import create

    def build(dtype) -> tuple[nn.Module, tuple[torch.Tensor, ...], Any]:
        # The weights drawn from the row's seed too (as the inputs are): a row's numerical error is the same
        # in every run; the process's own random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            return _build(dtype)

    def _build(dtype) -> tuple[nn.Module, tuple[torch.Tensor, ...], Any]:
        if network is not None:
            placed = network.create(spec, shape, overrides, device=options.device, dtype=dtype, seed=options.seed)
            return placed.model, tuple(placed.inputs), placed
        module, example = create(spec, shape, dict(overrides or {}), device=options.device, dtype=dtype,
                                 seed=options.seed)
        return module, tuple(example), None

    attention: tuple[str, ...] = ()
    fields: dict[str, Any] = {}
    try:
        eager, inputs, placed = build(options.torch_dtype)
        if placed is not None:
            attention = tuple(placed.blocks)
            fields = {"network": placed.network, "placement": placed.placement,
                      "stages": ",".join(map(str, placed.stages)), "inserted": len(placed.blocks)}
    except Exception as exc:  # noqa: BLE001  (ShapeError / ConfigError are the block's; anything else too)
        raise BlockFailure("build", exc) from exc
    scale = float(getattr(options, "input_scale", 1.0))
    if scale != 1.0:  # unit-variance noise by default; larger for the activations deep in a residual stream
        inputs = tuple((x.float() * scale).to(x.dtype) if x.is_floating_point() else x for x in inputs)
    if options.channels_last:
        eager = eager.to(memory_format=torch.channels_last)
        inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in inputs)
    eager.eval()

    def reference() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """Eager float32 with the measured module's weights and input values (upcast), contiguous."""
        module, _, _ = build(torch.float32)
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in eager.state_dict().items()})
        return module.eval(), tuple(x.float().contiguous() if x.is_floating_point() else x for x in inputs)

    prepared = Prepared(eager=eager, module=eager, inputs=inputs, options=options, batch=int(shape[0]),
                        attention=attention, network_fields=fields, reference=reference)
    # With a chosen SDPA backend, torch says in warnings why its kernel cannot run, then fails with "no kernel":
    # the warnings are the reason the row's status gives.
    chosen = getattr(options, "sdpa_backend", "auto") != "auto"
    said: list = []
    try:
        with torch.inference_mode(), watch_sdpa() as kernels, \
                (warnings.catch_warnings(record=True) if chosen else contextlib.nullcontext()) as got:
            if chosen:
                warnings.simplefilter("always")
                said = got
            prepared.forward()  # fails here, with the block's own message, when it cannot take the shape
        # the kernel the eager forward picked: what the row's sdpa_kernel column reports (watched here, not
        # around a compiled module, where the watch would make Dynamo compile the block again)
        prepared.sdpa_kernel = ",".join(dict.fromkeys(kernels)) or None
    except Exception as exc:  # noqa: BLE001
        reasons = list(dict.fromkeys(str(w.message).split("\n")[0] for w in said))
        if reasons:
            exc = RuntimeError(f"{exc} ({'; '.join(reasons[:2])})")
        raise BlockFailure("forward", exc) from exc

    if getattr(options, "runtime", "eager") not in ("eager", "", None):
        _deploy(prepared, spec, shape, network)
    elif options.compile:
        mode = None if options.compile_mode in (None, "", "default") else options.compile_mode
        # Dynamo caches compiled frames per code object, and blocks share some (the token adapter's
        # forward): past its recompile limit it would silently run a later block eagerly. Each row compiles
        # its own block from a clean cache.
        torch._dynamo.reset()
        prepared.module = torch.compile(eager, mode=mode)
        cached = _compile_cache_files()
        spent = 0.0
        try:
            with torch.inference_mode():
                spent += _timed(prepared.forward, options.device)
            if options.mode in ("train", "both"):
                prepared.module.train()
                spent += _timed(prepared.train_step, options.device)
                prepared.clear_grads()
                prepared.module.eval()
        except Exception as exc:  # noqa: BLE001
            raise BlockFailure("compile", exc) from exc
        prepared.compile_s = round(spent, 3)
        after = _compile_cache_files()
        if cached is not None and after is not None:
            prepared.compile_cache = "warm" if after <= cached else "cold"
    elif options.mode in ("train", "both"):
        try:
            prepared.module.train()
            prepared.train_step()
            prepared.clear_grads()
        except Exception as exc:  # noqa: BLE001
            raise BlockFailure("training step", exc) from exc
        finally:
            prepared.module.eval()
    return prepared


def _deploy(prepared: Prepared, spec, shape: Sequence[int], network) -> None:
    """The row's runtime (attnzoo.profiling.runtimes): the eager block exported and opened (export_s), run once
    (a failure is the row's status), and checked at a second size with H and W dynamic. ``prepared.module``
    then runs the runtime, so the measurements time it and compare its output with eager float32."""
    from attnzoo.build import format_shape
    from attnzoo.profiling import runtimes

    options = prepared.options
    runtime = runtimes.runtime_of(options)
    block = spec.name if spec is not None else "none"
    size = format_shape(shape).replace(",", "x")
    name = f"{network.network.name}-{block}-{size}" if network is not None else f"{block}-{size}"
    if options.dtype != "float32":
        name += f"-{options.dtype}"
    try:
        deployed = runtimes.deploy(prepared.eager, prepared.inputs, options, name)
    except runtimes.RuntimeFailure as failure:
        stage = "export" if failure.fields.get("export") not in (None, "ok") else f"{runtime} session"
        raise BlockFailure(stage, failure) from failure
    prepared.module = deployed.module
    prepared.deploy_fields = dict(deployed.fields)
    prepared.memory_tracked = deployed.memory_tracked
    prepared.exported_files = deployed.files
    try:
        with torch.inference_mode():
            prepared.forward()
    except Exception as exc:  # noqa: BLE001
        raise BlockFailure(f"{runtime} forward", runtimes.RuntimeFailure(runtimes.reason(exc),
                                                                         prepared.deploy_fields)) from exc
    multiple = getattr(network.network, "multiple", None) if network is not None else None
    # A second size the block or network should take: twice H and W for a block (window and patch sizes still
    # divide), one step of the network's multiple further for a network (at least 32: its strides).
    grow = (lambda d: d + max(multiple, 32)) if multiple else (lambda d: 2 * d)

    def reference_at(inputs):
        module, _ = prepared.reference()
        return module(*(x.float() if x.is_floating_point() else x for x in inputs))

    prepared.deploy_fields["dynamic_hw"] = runtimes.dynamic_check(prepared.eager, prepared.inputs, options,
                                                                  reference_at, grow)


__all__ = ["BlockFailure", "Prepared", "prepare"]
