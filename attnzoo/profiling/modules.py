"""Where the cost is: one row per submodule of a block, down to a depth.

The rows partition the block: each submodule at ``depth`` (or a shallower leaf), plus an ``(own ops)`` row
for every module whose forward runs operators outside its children (an attention block's Q K^T, its
softmax, a residual add), so the MACs, bytes and time of the rows add up to the block's. MACs come from
the same fvcore count as ``profile`` (per module scope); bytes from the dispatch-level traffic counter,
attributed to the innermost listed module running. Time: the block's forward is timed as ``profile``
times it (attnzoo.profiling.timing, no hooks, at the run's --threads); then hooks around the listed modules'
forwards (synchronised on CUDA) give each module's share of every hooked forward, and a row's time is the
median of its shares times the block's median, so the rows add up to the block's forward time (the hooks'
own overhead does not). A listed module whose forward never runs while its parameters are used by the code
of a module above it (a block that fuses its q, k, v projections into one matmul) is noted: its MACs and
time are in ``(own ops)``.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from attnzoo.blocks.adapters import ForwardWith, TokensFromFeatureMap

OWN = "(own ops)"
MODULE_COLUMNS = ("block", "shape", "module", "type", "params", "macs", "bytes_eager", "fwd_ms", "time_share",
                  "block_fwd_ms", "threads", "note")
#: Said of a listed module whose forward never ran although it holds parameters.
NOT_CALLED = "not called: its parameters are used by the code of a module above it; its MACs and time are in (own ops)"


def _root_prefix(module: nn.Module) -> str:
    """Adapters that attnzoo wraps around a block are not the user's modules: names start inside them."""
    prefix = ""
    while isinstance(module, (TokensFromFeatureMap, ForwardWith)):
        inner = "block" if isinstance(module, TokensFromFeatureMap) else "module"
        module = getattr(module, inner)
        prefix += inner + "."
    return prefix


def listed_modules(module: nn.Module, depth: int) -> tuple[str, list[str]]:
    """The root's qualified name and the qualified names of the modules at ``depth`` below it (or shallower
    leaves), in definition order."""
    prefix = _root_prefix(module)
    root = prefix[:-1]
    base = len(root.split(".")) if root else 0
    listed = []
    for name, child in module.named_modules():
        if not name.startswith(prefix) or name == root:
            continue
        level = len(name.split(".")) - base
        is_leaf = not any(True for _ in child.children())
        if level == depth or (level < depth and is_leaf):
            listed.append(name)
    return root, listed


class _Scopes:
    """Forward hooks that track which listed module is running (innermost) and how long each took."""

    def __init__(self, module: nn.Module, listed: Sequence[str], device: str):
        self.stack: list[str] = []
        self.seconds = {name: 0.0 for name in listed}
        self.calls = {name: 0 for name in listed}  # forwards entered (timing or not)
        self._starts: list[float] = []
        self._sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
        self.timing = False
        named = dict(module.named_modules())
        self._handles = []
        for name in listed:
            self._handles.append(named[name].register_forward_pre_hook(self._enter(name)))
            self._handles.append(named[name].register_forward_hook(self._leave(name)))

    def _enter(self, name: str):
        def hook(mod, args):
            if self.timing:
                self._sync()
                self._starts.append(time.perf_counter())
            self.stack.append(name)
            self.calls[name] += 1
        return hook

    def _leave(self, name: str):
        def hook(mod, args, out):
            if self.timing:
                self._sync()
                self.seconds[name] += time.perf_counter() - self._starts.pop()
            self.stack.pop()
        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def module_rows(spec, shape: Sequence[int], options, overrides: Mapping[str, Any] | None = None,
                depth: int = 1) -> list[dict[str, Any]]:
    """Rows of the submodules of ``spec`` at ``shape`` down to ``depth`` (see the module docstring), measured
    on ``options.threads`` CPU threads."""
    from attnzoo.errors import ConfigError
    from attnzoo.profiling.timing import threads_set as _threads

    if depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {depth}")
    with _threads(options.threads):
        return _module_rows(spec, shape, options, overrides, depth)


def _module_rows(spec, shape, options, overrides, depth) -> list[dict[str, Any]]:
    import statistics

    from attnzoo.build import format_shape
    from attnzoo.profiling.flops import count_macs
    from attnzoo.profiling.prepare import prepare
    from attnzoo.profiling.timing import time_callable
    from attnzoo.profiling.traffic import TrafficCounter

    prepared = prepare(spec, shape, options, overrides)
    module, inputs = prepared.eager, prepared.inputs
    root, listed = listed_modules(module, depth)
    named = dict(module.named_modules())

    with prepared.mode_context():
        count = count_macs(module, inputs)
    total_macs = count.macs
    macs = {name: count.by_module.get(name, 0) for name in listed}

    # The block's forward time, as profile measures it: no hooks.
    with torch.inference_mode():
        block = time_callable(prepared.forward, options.device, options.min_time, options.warmup)
    block_ms = block.median_ms

    scopes = _Scopes(module, listed, options.device)
    try:
        # Bytes: each operator's traffic goes to the innermost listed module running, else the root's own ops.
        class Scoped(TrafficCounter):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                before = self.total
                out = super().__torch_dispatch__(func, types, args, kwargs)
                owner = scopes.stack[-1] if scopes.stack else OWN
                moved[owner] = moved.get(owner, 0) + self.total - before
                return out

        moved: dict[str, int] = {}
        with torch.inference_mode(), prepared.mode_context(), Scoped():
            module(*inputs)

        # Shares: whole forwards with the hooks timing the listed modules, for about min_time seconds; each
        # forward gives every module's share of that forward.
        scopes.timing = True
        sync = scopes._sync
        shares: dict[str, list[float]] = {name: [] for name in listed}
        calls, spent = 0, 0.0
        with torch.inference_mode():
            prepared.forward()  # warm-up
            while calls < 3 or spent < options.min_time:
                for name in scopes.seconds:
                    scopes.seconds[name] = 0.0
                sync()
                start = time.perf_counter()
                prepared.forward()
                sync()
                elapsed = time.perf_counter() - start
                spent += elapsed
                calls += 1
                for name in listed:
                    shares[name].append(scopes.seconds[name] / elapsed if elapsed > 0 else 0.0)
    finally:
        scopes.close()

    share = {name: statistics.median(values) for name, values in shares.items()}
    listed_share = sum(share.values())
    if listed_share > 1:  # the medians of shares need not add up to one: scale them so that the rows do
        share = {name: value / listed_share for name, value in share.items()}
        listed_share = 1.0
    rows = []
    block_params = sum(p.numel() for p in module.parameters())
    shape_text = format_shape(shape)
    threads = torch.get_num_threads()
    common = {"block": spec.name, "shape": shape_text, "block_fwd_ms": round(block_ms, 4), "threads": threads}
    for name in listed:
        child = named[name]
        params = sum(p.numel() for p in child.parameters())
        called = scopes.calls[name] > 0
        rows.append({**common, "module": name[len(root) + 1:] if root else name, "type": type(child).__name__,
                     "params": params, "macs": macs[name], "bytes_eager": moved.get(name, 0),
                     "fwd_ms": round(share[name] * block_ms, 4), "time_share": round(share[name], 4),
                     "note": "" if called or not params else NOT_CALLED})
    own = max(0.0, 1.0 - listed_share)
    listed_params = sum(r["params"] for r in rows)
    rows.append({**common, "module": OWN, "type": type(named[root]).__name__,
                 "params": block_params - listed_params, "macs": total_macs - sum(macs.values()),
                 "bytes_eager": moved.get(OWN, 0), "fwd_ms": round(own * block_ms, 4), "time_share": round(own, 4),
                 "note": ""})
    return rows


__all__ = ["MODULE_COLUMNS", "NOT_CALLED", "OWN", "listed_modules", "module_rows"]
