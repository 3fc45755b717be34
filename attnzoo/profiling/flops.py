"""MACs and FLOPs with every operator accounted for.

fvcore's ``FlopCountAnalysis`` (a JIT trace) is the counter; attnzoo replaces its handles with its own set
so that the attention matmuls are always counted, and sorts every traced operator into one of three kinds:

* **contractions** (counted): ``matmul``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``addbmm``, ``mv``,
  ``addmv``, ``dot``, ``linear``, every convolution (grouped, depthwise, transposed, and torchvision's
  ``deform_conv2d``), ``einsum``, ``scaled_dot_product_attention`` (Q K^T and the weighted sum of V) and
  the fused ``nn.MultiheadAttention`` kernel. One multiply-add is 1 MAC and 2 FLOPs. Biases and the added
  term of ``addmm`` / ``baddbmm`` are not multiply-adds. This is what ``torch.utils.flop_counter``
  counts (its FLOPs are 2 x these MACs), and the tests check every card against it.
* **not multiply-adds** (0 on purpose, listed in :attr:`MacCount.not_macs`): elementwise arithmetic and
  activations (so a sigmoid gate ``x * w`` or the ``1/sqrt(d)`` scale), softmax, normalisation, pooling
  and resampling, reductions, comparisons, and shape / copy / creation operators.
* **uncounted** (0 because attnzoo has no formula, named in :attr:`MacCount.uncounted` and in the row's
  ``uncounted_ops`` column): any other operator, a custom ``autograd.Function`` (``prim::PythonOp.Name``)
  or a contraction whose shapes the trace lost. A number with an empty ``uncounted`` list is complete.

Counting runs the block once in eval mode (dropout and batch statistics off) without gradients.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn

Handle = Callable[[list, list], Any]

#: Operators that are not multiply-adds: counted as 0 MACs on purpose (not "uncounted").
NOT_MACS: frozenset[str] = frozenset("aten::" + name for name in """
    Int ScalarImplicit Bool Float size dim numel len __getitem__ __and__ __or__ __not__ __is__ __isnot__
    view view_as reshape reshape_as flatten unflatten permute transpose t swapaxes movedim squeeze unsqueeze
    unsqueeze_ squeeze_ expand expand_as broadcast_to contiguous clone alias as_strided detach detach_ to
    type_as copy_ cat concat concatenate stack hstack vstack split split_with_sizes chunk unbind select
    slice narrow index index_select index_put index_put_ gather scatter scatter_ scatter_add scatter_add_
    masked_fill masked_fill_ masked_select masked_scatter where nonzero take roll flip repeat
    repeat_interleave tile pad constant_pad_nd reflection_pad1d reflection_pad2d replication_pad1d
    replication_pad2d replication_pad3d pixel_shuffle pixel_unshuffle channel_shuffle unfold im2col col2im
    diagonal diag tril triu meshgrid lift_fresh
    empty empty_like new_empty zeros zeros_like new_zeros ones ones_like new_ones full full_like new_full
    fill_ zero_ arange linspace logspace eye rand rand_like randn randn_like randint randperm bernoulli
    bernoulli_ normal_ uniform_ tensor scalar_tensor
    add add_ sub sub_ rsub mul mul_ div div_ true_divide floor_divide remainder fmod neg neg_ abs abs_ sign
    pow pow_ square sqrt sqrt_ rsqrt exp exp_ expm1 log log_ log1p log2 log10 reciprocal sin cos tan tanh
    tanh_ asin acos atan atan2 sinh cosh erf erfc erfinv floor ceil round trunc frac clamp clamp_ clamp_min
    clamp_min_ clamp_max clamp_max_ clip maximum minimum fmax fmin lerp addcmul addcmul_ addcdiv addcdiv_
    outer ger hypot nan_to_num nan_to_num_ xlogy
    relu relu_ relu6 sigmoid sigmoid_ hardsigmoid hardsigmoid_ hardswish hardswish_ hardtanh hardtanh_
    gelu gelu_ silu silu_ mish mish_ elu elu_ selu selu_ celu leaky_relu leaky_relu_ prelu softplus
    softsign log_sigmoid glu threshold threshold_ tanhshrink softshrink hardshrink logit
    softmax _softmax log_softmax _log_softmax softmin logsumexp
    sum mean amax amin max min aminmax prod std var std_mean var_mean norm frobenius_norm
    linalg_vector_norm linalg_norm nuclear_norm renorm argmax argmin cumsum cumprod cummax topk sort
    argsort kthvalue median nanmean nansum all any count_nonzero
    batch_norm _batch_norm_impl_index native_batch_norm layer_norm native_layer_norm group_norm
    native_group_norm instance_norm rms_norm local_response_norm
    avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d max_pool1d_with_indices
    max_pool2d_with_indices max_pool3d_with_indices adaptive_avg_pool1d adaptive_avg_pool2d
    adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d
    upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_linear1d upsample_bilinear2d
    upsample_bicubic2d upsample_trilinear3d _upsample_nearest_exact2d _upsample_bilinear2d_aa
    grid_sampler grid_sampler_2d affine_grid_generator
    dropout dropout_ feature_dropout feature_dropout_ alpha_dropout native_dropout
    eq ne lt le gt ge eq_ ne_ logical_and logical_or logical_not logical_xor bitwise_and bitwise_or
    bitwise_not bitwise_xor isnan isinf isfinite equal allclose
""".split())


class _ShapeUnknown(Exception):
    """The trace did not record a complete shape for an operand."""


class _FormulaError(Exception):
    """An error inside one of attnzoo's MAC formulas (a bug): re-raised as itself, never a fallback."""


def _shape(value: Any) -> list[int]:
    if not value.isCompleteTensor():
        raise _ShapeUnknown
    return list(value.type().sizes())


def _broadcast(a: Sequence[int], b: Sequence[int]) -> list[int]:
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + list(a), [1] * (n - len(b)) + list(b)
    return [max(x, y) for x, y in zip(a, b)]


def _matmul_macs(a: list[int], b: list[int]) -> int:
    """torch.matmul semantics: 1-D operands are promoted, batch dimensions broadcast."""
    if len(a) == 1 and len(b) == 1:
        return a[0]
    if len(a) == 1:
        a = [1] + a
    if len(b) == 1:
        b = b + [1]
    return math.prod(_broadcast(a[:-2], b[:-2])) * a[-2] * a[-1] * b[-1]


def _matmul(inputs: list, outputs: list) -> int:  # matmul, mm, bmm, mv, dot
    return _matmul_macs(_shape(inputs[0]), _shape(inputs[1]))


def _addmm(inputs: list, outputs: list) -> int:  # addmm, baddbmm, addbmm, addmv: (input, a, b, ...)
    return _matmul_macs(_shape(inputs[1]), _shape(inputs[2]))


def _linear(inputs: list, outputs: list) -> int:
    x, w = _shape(inputs[0]), _shape(inputs[1])
    return math.prod(x) * (w[0] if len(w) == 2 else 1)


def _conv_macs(x: list[int], w: list[int], out: list[int], transposed: bool) -> int:
    """Every output position of every output channel takes (C_in / groups) * prod(kernel) multiply-adds.

    For a transposed convolution the weight is (C_in, C_out / groups, k...) and each input position
    scatters into the kernel window, hence the input's spatial size.
    """
    batch = x[0] if len(x) == len(w) else 1  # unbatched inputs have one dimension fewer
    spatial = x[-(len(w) - 2):] if transposed else out[-(len(w) - 2):]
    return batch * math.prod(w) * math.prod(spatial)


def _conv_handle(transposed_index: int | None, always_transposed: bool = False) -> Handle:
    def handle(inputs: list, outputs: list) -> int:
        transposed = always_transposed or (
            transposed_index is not None and bool(inputs[transposed_index].toIValue()))
        return _conv_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0]), transposed)
    return handle


def _sdpa(inputs: list, outputs: list) -> int:
    """softmax(Q K^T) V: L*S*E for the scores and L*S*Ev for the weighted sum, per batch and head."""
    q, k, v = _shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])
    batch = math.prod(_broadcast(q[:-2], k[:-2]))
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _native_mha(inputs: list, outputs: list) -> int:
    """The fused nn.MultiheadAttention path: q, k, v projections, attention, output projection."""
    q, k = _shape(inputs[0]), _shape(inputs[1])
    batch, length, embed = (q[0], q[1], q[2]) if len(q) == 3 else (1, q[0], q[1])
    source = k[-2]
    return batch * (2 * length * embed * embed + 2 * source * embed * embed + 2 * length * source * embed)


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """Multiply-adds of ``torch.einsum(equation, ...)`` contracted left to right, as torch does without
    opt_einsum: labels found in one operand only (and not needed later) are summed out first, which is
    not a multiply-add; each pairwise product that sums over a shared label then costs the product of the
    sizes of its labels (one without a summed label is an elementwise product, not a multiply-add)."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum '{equation}' has {len(terms)} operands, got {len(shapes)} shapes")
    ellipsis = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t), default=0)
    ell_labels = [chr(0x2460 + i) for i in range(ellipsis)]  # labels that cannot clash with letters
    operands: list[list[str]] = []
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        if "..." in term:
            head, _, tail = term.partition("...")
            n = len(shape) - len(head) - len(tail)
            labels = list(head) + ell_labels[ellipsis - n:] + list(tail)
        else:
            labels = list(term)
        if len(labels) != len(shape):
            raise ValueError(f"einsum '{equation}': operand '{term}' does not match shape {list(shape)}")
        for label, size in zip(labels, shape):
            sizes[label] = max(sizes.get(label, 1), size)
        operands.append(labels)
    if arrow:
        head, _, tail = rhs.partition("...")
        output = list(head) + (ell_labels if "..." in rhs else []) + list(tail)
    else:
        counts = Counter(label for labels in operands for label in labels)
        output = ell_labels + sorted(l for l, c in counts.items() if c == 1 and l not in ell_labels)
    macs = 0
    current = operands[0]
    for i in range(1, len(operands)):
        nxt = operands[i]
        later = set(output).union(*operands[i + 1:])
        left = {l for l in current if l in nxt or l in later}
        right = {l for l in nxt if l in current or l in later}
        union = left | right
        if (left & right) - later:  # something is summed over; otherwise it is an elementwise product
            macs += math.prod(sizes[l] for l in union)
        current = [l for l in sorted(union) if l in later]
    return macs


def _einsum(inputs: list, outputs: list) -> int:
    equation = inputs[0].toIValue()
    operands = list(inputs[1].node().inputs())
    return einsum_macs(equation, [_shape(v) for v in operands])


#: Contractions attnzoo counts, by traced operator name; the value names the row's by_operator entry.
CONTRACTIONS: dict[str, tuple[str, Handle]] = {
    "aten::matmul": ("matmul", _matmul),
    "aten::mm": ("matmul", _matmul),
    "aten::bmm": ("matmul", _matmul),
    "aten::mv": ("matmul", _matmul),
    "aten::dot": ("matmul", _matmul),
    "aten::vdot": ("matmul", _matmul),
    "aten::addmm": ("matmul", _addmm),
    "aten::addmm_": ("matmul", _addmm),
    "aten::baddbmm": ("matmul", _addmm),
    "aten::baddbmm_": ("matmul", _addmm),
    "aten::addbmm": ("matmul", _addmm),
    "aten::addmv": ("matmul", _addmm),
    "aten::linear": ("linear", _linear),
    "aten::einsum": ("einsum", _einsum),
    "aten::_convolution": ("conv", _conv_handle(6)),
    "aten::convolution": ("conv", _conv_handle(6)),
    "aten::conv1d": ("conv", _conv_handle(None)),
    "aten::conv2d": ("conv", _conv_handle(None)),
    "aten::conv3d": ("conv", _conv_handle(None)),
    "aten::conv_transpose1d": ("conv", _conv_handle(None, always_transposed=True)),
    "aten::conv_transpose2d": ("conv", _conv_handle(None, always_transposed=True)),
    "aten::conv_transpose3d": ("conv", _conv_handle(None, always_transposed=True)),
    "torchvision::deform_conv2d": ("deform_conv2d", _conv_handle(None)),
    "aten::scaled_dot_product_attention": ("sdpa", _sdpa),
    "aten::_native_multi_head_attention": ("multi_head_attention", _native_mha),
}


@dataclass(frozen=True)
class MacCount:
    """The MACs of one forward call. ``flops`` is 2 x ``macs``."""

    macs: int
    by_operator: dict[str, int] = field(default_factory=dict)
    #: Operators without a formula, as "name xcount": their multiply-adds (if any) are missing from macs.
    uncounted: list[str] = field(default_factory=list)
    #: Operators seen that are not multiply-adds (elementwise, softmax, norms, ...), counted 0 on purpose.
    not_macs: list[str] = field(default_factory=list)
    #: "fvcore" (JIT trace), or "flop_counter" when the trace failed (see ``note``).
    method: str = "fvcore"
    note: str = ""
    #: The counter that counted, and why: "fvcore", or "FlopCounterMode: fvcore failed: <reason>" when
    #: fvcore could not be imported or its JIT trace failed (the only failures that fall back).
    counter: str = "fvcore"
    #: MACs inside each submodule, by qualified name ("" is the whole module); fvcore's count only.
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def complete(self) -> bool:
        return not self.uncounted


@contextlib.contextmanager
def quiet():
    """Keep fvcore's logging and the tracer's warnings away from the user's stderr."""
    loggers = [logging.getLogger(name) for name in ("fvcore", "fvcore.nn.jit_analysis", "iopath")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _fvcore_analysis():
    with quiet():  # importing fvcore scripts functions, which warns about torch.jit.script
        from fvcore.nn import FlopCountAnalysis
        from fvcore.nn import jit_analysis
    return FlopCountAnalysis, frozenset(getattr(jit_analysis, "_IGNORED_OPS", ()))


def count_macs(module: nn.Module, inputs: Sequence[torch.Tensor] | torch.Tensor) -> MacCount:
    """Count the multiply-adds of ``module(*inputs)`` (see the module docstring for the policy)."""
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    try:
        FlopCountAnalysis, fvcore_ignored = _fvcore_analysis()
    except ImportError as exc:  # fvcore is not installed (or broken at import): the other counter counts
        return _flop_counter_count(module, inputs, reason=_reason(exc))
    by_operator: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    not_macs: set[str] = set()

    def counting(op: str, label: str, handle: Handle) -> Handle:
        def wrapped(node_inputs: list, node_outputs: list) -> int:
            try:
                macs = int(handle(node_inputs, node_outputs))
            except _ShapeUnknown:  # the trace lost an operand's shape: named, not guessed
                uncounted[f"{op} (shape unknown)"] += 1
                return 0
            except Exception as exc:  # a bug in the formula: it must not pass for a lost shape or a failed trace
                raise _FormulaError(op) from exc
            by_operator[label] += macs
            return macs
        return wrapped

    def skipping(op: str) -> Handle:
        def wrapped(node_inputs: list, node_outputs: list) -> int:
            not_macs.add(op)
            return 0
        return wrapped

    was_training = module.training
    module.eval()
    try:
        with quiet(), torch.no_grad():
            analysis = FlopCountAnalysis(module, inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            analysis.clear_op_handles()
            for op in NOT_MACS | fvcore_ignored:
                analysis.set_op_handle(op, skipping(op))
            for op, (label, handle) in CONTRACTIONS.items():
                analysis.set_op_handle(op, counting(op, label, handle))
            try:
                total = int(analysis.total())
                missing = analysis.unsupported_ops()
                by_module = {name: int(macs) for name, macs in analysis.by_module().items()}
            except _FormulaError as exc:
                raise exc.__cause__ from None
            except RuntimeError as exc:  # torch.jit.trace failed (closures, non-tensor outputs, ...): fall
                # back to the dispatch-level counter. A forward that fails fails again there, and surfaces.
                return _flop_counter_count(module, inputs, reason=_reason(exc))
    finally:
        module.train(was_training)
    uncounted.update(missing)
    return MacCount(macs=total, by_operator=dict(sorted(by_operator.items())),
                    uncounted=[f"{op} x{n}" if n > 1 else op for op, n in sorted(uncounted.items())],
                    not_macs=sorted(op.split("::")[-1] for op in not_macs), by_module=by_module)


def _reason(exc: BaseException) -> str:
    """The first sentence of an exception's message, on one line."""
    return " ".join(str(exc).split()).split(". ")[0][:200] or type(exc).__name__


def _deform_conv2d_flops(input_shape, weight_shape, offset_shape, mask_shape, bias_shape, *args,
                         out_shape=None, **kwargs) -> int:
    return 2 * _conv_macs(list(input_shape), list(weight_shape), list(out_shape), False)


#: The fused SDPA kernels that FlopCounterMode must know (q, k, v are the first three arguments of each).
#: torch 2.14 has no formula for the CPU flash kernel and counts it as 0; torch 2.15 has one.
SDPA_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")


def _torch_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's own SDPA formula (``torch.utils.flop_counter.sdpa_flop_count``), not attnzoo's: the
    cross-check stays independent of the counter it checks."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def sdpa_kernels_without_formula() -> list[str]:
    """The fused SDPA kernels of this torch that its FlopCounterMode has no formula for."""
    from torch.utils import flop_counter

    known = getattr(flop_counter, "flop_registry", {})
    return [name for name in SDPA_KERNELS
            if hasattr(torch.ops.aten, name) and getattr(torch.ops.aten, name) not in known]


def flop_counter_mapping() -> dict:
    """Extra formulas for torch.utils.flop_counter.FlopCounterMode: attnzoo's deform_conv2d (torch has
    none) and, where this torch lacks one, torch's own formula for a fused SDPA kernel."""
    mapping = {getattr(torch.ops.aten, name): _torch_sdpa_flops for name in sdpa_kernels_without_formula()}
    try:
        import torchvision  # noqa: F401  (registers torch.ops.torchvision)
        mapping[torch.ops.torchvision.deform_conv2d] = _deform_conv2d_flops  # keyed by overload packet
    except (ImportError, AttributeError, RuntimeError):
        pass
    return mapping


def flop_counter_macs(module: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """MACs by torch.utils.flop_counter.FlopCounterMode (dispatch level, eval mode): an independent check.

    Gradients stay enabled so that nn.MultiheadAttention takes its decomposed path: FlopCounterMode has
    no formula for the fused inference kernel it uses otherwise.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with torch.enable_grad(), FlopCounterMode(display=False, custom_mapping=flop_counter_mapping()) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops()) // 2


def _flop_counter_count(module: nn.Module, inputs: tuple, reason: str) -> MacCount:
    macs = flop_counter_macs(module, inputs)
    note = (f"jit trace failed ({reason}); counted by torch FlopCounterMode, which does not name the "
            "operators it has no formula for")
    return MacCount(macs=macs, by_operator={"flop_counter": macs}, uncounted=["unknown (jit trace failed)"],
                    method="flop_counter", note=note, counter=f"FlopCounterMode: fvcore failed: {reason}")
