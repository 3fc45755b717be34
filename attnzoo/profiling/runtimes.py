"""Runtimes other than eager PyTorch (``--runtime``): the prepared block exported, loaded into the runtime and
made callable like the block, so that the profiler's own measurements time it and check it.

- ``torch.export``: :func:`torch.export.export`'s program, run by its ``module()`` (the capture every modern
  exporter starts from).
- ``onnxruntime`` and ``openvino``: the block exported to ONNX by ``torch.onnx.export(dynamo=True)``, or, where
  that fails, by the TorchScript exporter (``dynamo=False``), then run by an ONNX Runtime CPU session or an
  OpenVINO CPU model compiled from the same file. Their threads are the row's threads.

:func:`deploy` exports and opens the session (timed: ``export_s``, outside the timings) and returns the module
that runs the runtime and the row's deploy columns (``attnzoo.columns.DEPLOY``); a failure raises
:class:`RuntimeFailure`, a one-line reason naming the operator where one is to blame. :func:`dynamic_check`
exports again with H and W (N for tokens) dynamic and runs the result at a second size against eager;
:func:`parity` says whether a row's output matches eager float32 within :data:`PARITY`.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

#: The largest error relative to the eager float32 output's scale a float32 runtime row may have (rel_err).
PARITY = 1e-4
#: The same for a row in a half type (its eager reference is float32 too).
HALF_PARITY = 1e-2


class RuntimeFailure(Exception):
    """The export, the runtime's session or its forward failed: the message is the one-line reason (the
    row's status and, for an export, its ``export`` column); ``fields`` are the deploy columns found so far."""

    def __init__(self, message: str, fields: dict[str, Any] | None = None):
        super().__init__(message)
        self.fields = dict(fields or {})


@dataclass
class Deployed:
    """A block in a runtime: ``module`` takes the block's inputs and returns torch tensors."""

    module: nn.Module
    fields: dict[str, Any]
    memory_tracked: bool  # attnzoo's memory tracker sees its allocations (torch.export: torch's own tensors)
    files: list[Path] = field(default_factory=list)  # what --export-dir kept


def runtime_of(options) -> str:
    return getattr(options, "runtime", "eager") or "eager"


def one_line(text: Any, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Operators named in exporters' messages: aten::linalg_qr, torchvision::deform_conv2d, aten.roll.default,
# torchvision.deform_conv2d.default, "ONNX export of operator Unfold", "operator 'aten::foo'".
_QUALIFIED = re.compile(r"\b((?:aten|torchvision|prim|onnx|quantized|_?c10d?|mylib|custom)::[A-Za-z_][\w.]*)")
_DOTTED = re.compile(r"\b(aten|torchvision|prim)\.([A-Za-z_]\w*)\.(?:default|Tensor|Scalar|int|self|dim|\w+)\b")
_NAMED = re.compile(r"(?:ONNX export of operator|export of operator|[Uu]nsupported operator|operator|"
                    r"for operations:) ['\"`]?([A-Za-z_][\w:.-]*)")


def operator_in(message: str) -> str | None:
    """The operator an exporter's or a runtime's message blames, as ``namespace::name`` where it says one."""
    for pattern in (_QUALIFIED, _DOTTED):
        found = pattern.search(message)
        if found:
            name = found.group(1) if pattern is _QUALIFIED else f"{found.group(1)}::{found.group(2)}"
            return name.rstrip(".")
    found = _NAMED.search(message)
    return found.group(1).rstrip(".") if found else None


#: Words of the line that says what went wrong, strongest first; lines that are banners are never it.
_TELLING = (("no conversion rule", "unsupported", "not supported", "no decomposition", "not implemented",
             "no onnx function", "could not find", "no symbolic"),
            ("could not", "cannot", "can't", "unable", "constraint", "guard", "data-dependent", "failed to",
             "does not", "is not", "error"))
_BANNER = ("this is step", "please report", "for more information", "please feel free", "exception from",
           "check 'false' failed", "frontend api failed", "summary:", "traceback", "#")


def _first_sentence(message: str) -> str:
    """The line of an exporter's or a runtime's long message that says what went wrong (not its banner, the
    graph or the stack)."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(message))
    if "## Exception summary" in message:  # torch.onnx's: the innermost error first, as "<class 'X'>: what"
        summary = message.split("## Exception summary", 1)[1]
        said = re.search(r"<class '[\w.]+'>: (.+)", summary)
        if said:
            return said.group(1).strip()
    lines = [line.strip(" -") for line in message.splitlines() if line.strip(" -")]
    lines = [line for line in lines if not line.lower().startswith(_BANNER)]
    for words in _TELLING:
        for line in lines:
            if any(word in line.lower() for word in words):
                return line
    return lines[0] if lines else ""


def reason(exc: BaseException) -> str:
    """One line for a failure: the operator to blame first where the message names one, then what it said."""
    message = str(exc)
    if "[ONNXRuntimeError]" in message:  # "... while running FusedMatMul node. Name:'...' Status Message: ..."
        node = re.search(r"while running (\w+) node", message)
        status = re.search(r"Status Message: (.+)", message)
        if node or status:
            said = one_line(status.group(1) if status else message, 160)
            return f"onnxruntime {node.group(1)}: {said}" if node else f"onnxruntime: {said}"
    for attribute in ("__cause__", "__context__"):  # torch.onnx wraps the exporter's own error
        inner = getattr(exc, attribute, None)
        if inner is not None and operator_in(str(inner)) and not operator_in(message):
            message = f"{message}\n{inner}"
    operator = operator_in(message)
    said = one_line(_first_sentence(message) or type(exc).__name__, 200)
    if operator and operator not in said:
        return f"{operator}: {said}"
    return said


@contextlib.contextmanager
def _quiet():
    """Exporters print progress and warnings; the rows go to stdout, so they must not."""
    import logging

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript",
                                                    "torch.fx.experimental.symbolic_shapes", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _dynamic_dims(inputs: Sequence[torch.Tensor]) -> list[dict[int, Any] | None]:
    """The dims left free in a dynamic export: H and W of a 4-D input (B,C,H,W), N of a 3-D one (B,N,C)."""
    from torch.export import Dim

    dims: list[dict[int, Any] | None] = []
    for x in inputs:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            dims.append(None)
        elif x.dim() == 4:
            dims.append({2: Dim.AUTO, 3: Dim.AUTO})
        elif x.dim() == 3:
            dims.append({1: Dim.AUTO})
        else:
            dims.append(None)
    return dims


def _axes(inputs: Sequence[torch.Tensor]) -> dict[str, dict[int, str]]:
    """The TorchScript exporter's dynamic_axes for the same dims."""
    axes = {}
    for i, x in enumerate(inputs):
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            axes[f"input{i}"] = {2: f"h{i}", 3: f"w{i}"}
        elif isinstance(x, torch.Tensor) and x.dim() == 3:
            axes[f"input{i}"] = {1: f"n{i}"}
    return axes


def onnx_export(module: nn.Module, inputs: Sequence[torch.Tensor], dynamic: bool = False):
    """``(onnx.ModelProto, exporter)``: torch.onnx.export(dynamo=True), else the TorchScript exporter (then
    ``exporter`` says why dynamo failed: ``torchscript (dynamo: aten::...: ...)``). Raises RuntimeFailure
    naming what each exporter refused."""
    import onnx

    inputs = tuple(inputs)
    errors: list[str] = []
    try:
        with _quiet():
            program = torch.onnx.export(module, inputs, dynamo=True, verbose=False,
                                        dynamic_shapes=tuple(_dynamic_dims(inputs)) if dynamic else None)
        return program.model_proto, "dynamo"
    except Exception as exc:  # noqa: BLE001  (every exporter error is the block's row)
        errors.append(f"dynamo: {reason(exc)}")
    try:
        buffer = io.BytesIO()
        names = [f"input{i}" for i in range(len(inputs))]
        with _quiet():
            torch.onnx.export(module, inputs, buffer, dynamo=False, input_names=names,
                              dynamic_axes=_axes(inputs) if dynamic else None)
        return onnx.load_from_string(buffer.getvalue()), f"torchscript ({errors[0]})"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"torchscript: {reason(exc)}")
    raise RuntimeFailure("; ".join(errors))


def op_histogram(model) -> str:
    """``MatMul:4 Softmax:1 Transpose:3``: the graph's operators (local functions' bodies counted where called),
    most frequent first."""
    functions = {(f.domain, f.name): f for f in getattr(model, "functions", [])}
    counts: Counter = Counter()

    def visit(nodes, depth=0):
        for node in nodes:
            body = functions.get((node.domain, node.op_type))
            if body is not None and depth < 8:
                visit(body.node, depth + 1)
            else:
                counts[node.op_type] += 1

    visit(model.graph.node)
    return " ".join(f"{op}:{n}" for op, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def opset_of(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _symbolic_inputs(model) -> bool:
    """Whether any input of an ONNX model has a dim left symbolic (a dim_param rather than a number)."""
    return any(d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim)


class RuntimeModule(nn.Module):
    """Calls a runtime with torch tensors and returns torch tensors (one, or a tuple as the block's outputs)."""

    def __init__(self, run: Callable[..., list], runtime: str):
        super().__init__()
        self._call = run
        self.runtime = runtime

    def forward(self, *inputs):
        outputs = [torch.from_numpy(out) for out in self._call(*inputs)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def extra_repr(self) -> str:
        return self.runtime


def _numpy(x: torch.Tensor):
    return x.detach().cpu().contiguous().numpy()


def onnxruntime_session(path: Path, threads: int) -> Callable[..., list]:
    """A CPU session of ONNX Runtime with the row's threads; returns the call."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # its errors are the row's status, not lines on stderr
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs):
        return session.run(None, {name: _numpy(x) for name, x in zip(names, inputs)})

    return run


def openvino_model(path: Path, threads: int, float32: bool) -> Callable[..., list]:
    """The ONNX file compiled by OpenVINO for the CPU with the row's threads (for a float32 row, inference in
    float32: OpenVINO's CPU plugin computes in bfloat16 by default where the processor has it)."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if float32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    count = len(compiled.outputs)

    def run(*inputs):
        request.infer([_numpy(x) for x in inputs])
        return [np.array(request.get_output_tensor(i).data) for i in range(count)]  # a copy: the request reuses it

    return run


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if runtime == "openvino":
        import openvino

        return openvino.__version__.split("-")[0]
    return torch.__version__


def _open(runtime: str, path: Path, threads: int, float32: bool) -> Callable[..., list]:
    if runtime == "onnxruntime":
        return onnxruntime_session(path, threads)
    return openvino_model(path, threads, float32)


def deploy(module: nn.Module, inputs: Sequence[torch.Tensor], options, name: str) -> Deployed:
    """``module`` (eval, the row's dtype) exported for ``options.runtime`` and opened: the module that runs it,
    the deploy columns, and the files kept in ``options.export_dir`` (named ``name`` + the suffix). Raises
    RuntimeFailure (with the columns so far) when the export or the session fails."""
    runtime = runtime_of(options)
    threads = torch.get_num_threads()
    fields: dict[str, Any] = {"runtime_version": runtime_version(runtime)}
    keep = Path(options.export_dir) if getattr(options, "export_dir", None) else None
    files: list[Path] = []
    start = time.perf_counter()
    if runtime == "torch.export":
        fields["exporter"] = "torch.export"
        try:
            with _quiet():
                program = torch.export.export(module, tuple(inputs))
        except Exception as exc:  # noqa: BLE001
            raise RuntimeFailure(reason(exc), {**fields, "export": reason(exc)}) from exc
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            files.append(keep / f"{name}.pt2")
            torch.export.save(program, str(files[-1]))
        fields.update(export="ok", export_s=round(time.perf_counter() - start, 3))
        return Deployed(program.module(), fields, memory_tracked=True, files=files)

    try:
        model, exporter = onnx_export(module, inputs)
    except RuntimeFailure as failure:
        raise RuntimeFailure(str(failure), {**fields, "export": str(failure)}) from failure
    import onnx

    fields.update(export="ok", exporter=exporter, opset=opset_of(model), onnx_ops=op_histogram(model))
    with tempfile.TemporaryDirectory(prefix="attnzoo-onnx-") as scratch:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            path = keep / f"{name}.onnx"
            files.append(path)
        else:
            path = Path(scratch) / f"{name}.onnx"
        onnx.save_model(model, str(path))
        try:
            run = _open(runtime, path, threads, options.dtype == "float32")
        except Exception as exc:  # noqa: BLE001
            raise RuntimeFailure(f"{runtime} could not load the exported model: {reason(exc)}", fields) from exc
    fields["export_s"] = round(time.perf_counter() - start, 3)
    return Deployed(RuntimeModule(run, runtime), fields, memory_tracked=False, files=files)


def second_inputs(inputs: Sequence[torch.Tensor], grow: Callable[[int], int], seed: int = 1) -> tuple:
    """The inputs at a second size: H and W of 4-D inputs (N of 3-D ones) grown by ``grow``, the same
    distribution (random normal at the inputs' scale)."""
    generator = torch.Generator().manual_seed(seed)
    made = []
    for x in inputs:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() not in (3, 4):
            made.append(x)
            continue
        shape = list(x.shape)
        for axis in ((2, 3) if x.dim() == 4 else (1,)):
            shape[axis] = grow(shape[axis])
        scale = float(x.float().std()) if x.numel() > 1 else 1.0
        fresh = torch.randn(shape, generator=generator) * scale
        made.append(fresh.to(device=x.device, dtype=x.dtype))
    return tuple(made)


def _size_text(inputs: Sequence[torch.Tensor]) -> str:
    return " and ".join("x".join(str(d) for d in x.shape) for x in inputs if isinstance(x, torch.Tensor))


def dynamic_check(module: nn.Module, inputs: Sequence[torch.Tensor], options,
                  reference: Callable[[tuple], Any], grow: Callable[[int], int]) -> str:
    """Exported with H and W (N for tokens) dynamic, does the runtime reproduce eager at a second size?
    ``yes``; ``specialised`` (the exporter fixed the size); ``no: ...`` (it runs but differs, or fails there);
    ``n/a: ...`` where eager itself does not take the second size (a block built for one size). Never raises."""
    runtime = runtime_of(options)
    bigger = second_inputs(inputs, grow)
    try:
        with torch.inference_mode():
            wanted = reference(bigger)
    except Exception as exc:  # noqa: BLE001
        return f"n/a: eager does not take {_size_text(bigger)}: {one_line(reason(exc), 120)}"
    try:
        if runtime == "torch.export":
            with _quiet():
                program = torch.export.export(module, tuple(inputs), dynamic_shapes=tuple(_dynamic_dims(inputs)))
            free = [s for node in program.graph.nodes if node.op == "placeholder"
                    for s in getattr(node.meta.get("val"), "shape", ()) if isinstance(s, torch.SymInt)]
            if not free:
                return "specialised"
            run = program.module()
        else:
            model, _ = onnx_export(module, inputs, dynamic=True)
            if not _symbolic_inputs(model):
                return "specialised"
            import onnx

            with tempfile.TemporaryDirectory(prefix="attnzoo-onnx-") as scratch:
                path = Path(scratch) / "dynamic.onnx"
                onnx.save_model(model, str(path))
                run = RuntimeModule(_open(runtime, path, 1, options.dtype == "float32"), runtime)
    except RuntimeFailure as failure:
        return f"no: the dynamic export failed: {one_line(failure, 160)}"
    except Exception as exc:  # noqa: BLE001
        return f"no: {one_line(reason(exc), 160)}"
    try:
        with torch.inference_mode():
            got = run(*bigger)
    except Exception as exc:  # noqa: BLE001
        guard = re.search(r"Guard failed: (.+)", str(exc))
        if guard:  # torch.export kept the size symbolic but guarded it: specialised all the same
            return f"specialised: {one_line(guard.group(1), 120)}"
        return f"no: fails at {_size_text(bigger)}: {one_line(reason(exc), 140)}"
    rel = relative_error(got, wanted)
    limit = PARITY if options.dtype == "float32" else HALF_PARITY
    if rel is None or rel > limit:
        shown = "NaN/inf or no output to compare" if rel is None else f"rel err {rel:.2g}"
        return f"no: differs from eager at {_size_text(bigger)} ({shown})"
    return "yes"


def relative_error(got: Any, want: Any) -> float | None:
    """The largest absolute difference over the largest magnitude of ``want``, leaf by leaf of two outputs;
    None when they do not pair up or ``got`` has a NaN or inf (the dynamic check's comparison; a row's error
    is attnzoo.profiling.measurements.output_error's)."""
    from torch.utils._pytree import tree_leaves

    mine = [t for t in tree_leaves(got) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    theirs = [t for t in tree_leaves(want) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not mine or len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
        return None
    if not all(bool(torch.isfinite(t).all()) for t in mine):
        return None
    worst = max(float((a.float() - b.float()).abs().max()) for a, b in zip(mine, theirs))
    scale = max(float(b.float().abs().max()) for b in theirs)
    return worst / scale if scale > 0 else (0.0 if worst == 0 else None)


def parity(row: dict[str, Any], options) -> str | None:
    """The status of a runtime row whose output is not eager float32's within PARITY (HALF_PARITY for a half
    type), None when it is (or the row is eager, or has no error measured)."""
    runtime = runtime_of(options)
    if runtime == "eager" or row.get("status") != "ok":
        return None
    limit = PARITY if options.dtype == "float32" else HALF_PARITY
    rel, bad = row.get("rel_err"), row.get("nonfinite")
    if bad:
        return f"error: {runtime} output has {bad} NaN/inf values"
    if rel is None:
        return f"error: {runtime} output could not be compared with eager float32"
    if rel > limit:
        return f"error: {runtime} output differs from eager float32: rel err {rel:.2g} > {limit:g}"
    return None


__all__ = ["Deployed", "HALF_PARITY", "PARITY", "RuntimeFailure", "RuntimeModule", "deploy", "dynamic_check",
           "onnx_export", "op_histogram", "operator_in", "parity", "reason", "second_inputs"]
