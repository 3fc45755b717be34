"""Peak memory of one call, in bytes above what was allocated before it (the inputs and the weights).

* CUDA: the caching allocator's statistics: ``reset_peak_memory_stats`` before the call,
  ``max_memory_allocated`` after it, minus ``memory_allocated`` before it. This includes every kernel's
  workspace (cuBLAS, cuDNN, fused attention) that goes through PyTorch's allocator.
* CPU: :class:`TensorAllocationTracker`, a ``TorchDispatchMode`` that sees every operator the call runs
  (forward and, for a training step, backward). Each storage an operator creates is added to a running
  total; a weak-reference finaliser on the storage subtracts it when the storage is freed. The peak of the
  total is the peak of live tensor memory created by the call: outputs, activations saved for backward,
  gradients and temporaries, counted once per storage (views and in-place results add nothing; a storage
  that an operator grows in place, an ``out=`` tensor or ``resize_``, adds its growth). It is
  not the process's resident memory; scratch buffers that a single kernel allocates and frees inside
  itself (oneDNN workspaces, for instance) never become tensors and are not seen.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_leaves

from attnzoo.profiling.traffic import EagerDispatchMode

MIB = 1024 * 1024


def _storage(tensor: torch.Tensor):
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested or subclass tensors without one storage
        return None


class TensorAllocationTracker(EagerDispatchMode):
    """Running and peak bytes of tensor storages created while the mode is active.

    >>> with TensorAllocationTracker() as tracker:
    ...     y = torch.ones(1024) * 2
    >>> tracker.peak_bytes
    8192
    """

    def __init__(self, device_type: str = "cpu"):
        super().__init__()
        self.device_type = device_type
        self.current_bytes = 0
        self.peak_bytes = 0
        self._live: dict[int, int] = {}  # StorageImpl address -> bytes, for storages created in the mode
        self._finalizers: list[weakref.finalize] = []

    def _release(self, key: int) -> None:
        self.current_bytes -= self._live.pop(key, 0)

    def _count(self, key: int, storage, nbytes: int) -> None:
        """Add ``nbytes`` to what storage ``key`` holds in the total (a new storage, or one that grew)."""
        if key not in self._live:
            if nbytes <= 0:
                return
            self._live[key] = 0
            # The Python storage object lives exactly as long as the storage (PyTorch preserves it), so the
            # finaliser runs when the memory is released.
            self._finalizers.append(weakref.finalize(storage, self._release, key))
        nbytes = max(nbytes, -self._live[key])  # a storage that shrinks gives back at most what it counted
        self._live[key] += nbytes
        self.current_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def _storages(self, value: Any) -> dict[int, tuple[Any, int]]:
        """The storages on this device among the tensors in ``value``: address -> (storage, bytes now)."""
        found = {}
        for leaf in tree_leaves(value):
            if isinstance(leaf, torch.Tensor) and leaf.device.type == self.device_type:
                storage = _storage(leaf)
                if storage is not None:
                    found[storage._cdata] = (storage, storage.nbytes())
        return found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        before = self._storages((args, kwargs))
        out = func(*args, **kwargs)
        # Storages given to the operator that grew in place (an ``out=`` tensor resized, ``resize_``): the
        # growth is memory this call allocated.
        for key, (storage, nbytes) in before.items():
            grown = storage.nbytes() - nbytes
            if grown:
                self._count(key, storage, grown)
        # New storages: an output that is not a view of an input (nor an in-place result) is new memory.
        for key, (storage, nbytes) in self._storages(out).items():
            if key not in before and key not in self._live:
                self._count(key, storage, nbytes)
        return out

    def __exit__(self, *exc: Any):
        result = super().__exit__(*exc)
        for finalizer in self._finalizers:
            finalizer.detach()  # storages that outlive the mode must not call back into it
        self._finalizers.clear()
        return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(fn: Callable[[], Any], device: str | torch.device = "cpu") -> int:
    """Run ``fn()`` once and return its peak memory in bytes above what was allocated before the call.

    Whatever ``fn`` returns is dropped before the function returns (it counted while it was alive).
    """
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        result = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - baseline
        del result
        return max(0, int(peak))
    with TensorAllocationTracker(device.type) as tracker:
        result = fn()
        del result
    return tracker.peak_bytes
