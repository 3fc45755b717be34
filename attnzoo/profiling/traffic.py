"""Bytes a forward moves, for the roofline.

* ``bytes_min``: compulsory traffic: every input read once, every output written once, every parameter and
  buffer read once. No implementation of the block can move less.
* ``bytes_eager``: what an unfused (eager) run moves: for every operator actually executed, seen at the
  dispatch level, the bytes of its tensor inputs and outputs. Views (reshape, permute, slicing) move nothing
  and count 0; an in-place operator reads and writes its operand. Fusion (torch.compile, a fused attention
  kernel) moves less than this, never less than ``bytes_min``.

Bytes of a tensor are its elements times the element size (a strided view reads only its elements).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _tensors(value: Any) -> list[torch.Tensor]:
    return [v for v in tree_leaves(value) if isinstance(v, torch.Tensor)]


def _is_view(func) -> bool:
    return bool(getattr(func, "is_view", False))


class EagerDispatchMode(TorchDispatchMode):
    """A dispatch mode that only ever watches eager code. Recent torch wraps a mode's ``__torch_dispatch__``
    in ``torch._dynamo.disable`` unless the mode opts out, and the first call then imports torch._dynamo
    (about 2 s): an eager forward never runs under Dynamo, so these modes opt out (older torch has no such
    hook and ignores it)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class TrafficCounter(EagerDispatchMode):
    """Sums the tensor bytes in and out of every operator executed while active; ``by_op`` per operator."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not _is_view(func):
            moved = sum(tensor_bytes(t) for t in _tensors((args, kwargs)) + _tensors(out))
            self.total += moved
            name = str(func.overloadpacket.__name__)
            self.by_op[name] = self.by_op.get(name, 0) + moved
        return out


@dataclass(frozen=True)
class Traffic:
    bytes_min: int
    bytes_eager: int
    by_op: dict[str, int]


def minimum_bytes(module: nn.Module, inputs: Sequence[torch.Tensor], outputs: Any) -> int:
    """Inputs read, outputs written, parameters and buffers read: once each (shared storages once)."""
    seen: set[int] = set()
    total = 0
    for tensor in list(inputs) + _tensors(outputs) + list(module.parameters()) + list(module.buffers()):
        key = id(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor_bytes(tensor)
    return total


def count_traffic(module: nn.Module, inputs: Sequence[torch.Tensor], context=None) -> Traffic:
    """Bytes of one forward of ``module`` on ``inputs`` (in eval mode, no gradients), run in ``context``
    (an autocast context, say) when given."""
    counter = TrafficCounter()
    with torch.inference_mode(), (context or contextlib.nullcontext()):
        with counter:
            outputs = module(*inputs)
        low = minimum_bytes(module, inputs, outputs)
    return Traffic(bytes_min=low, bytes_eager=counter.total, by_op=dict(counter.by_op))


__all__ = ["EagerDispatchMode", "Traffic", "TrafficCounter", "count_traffic", "minimum_bytes", "tensor_bytes"]
