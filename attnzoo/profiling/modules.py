"""Where the cost is: one row per submodule of a block, down to a depth.

The rows partition the block: each submodule at ``depth`` (or a shallower leaf), plus an ``(own ops)`` row
for every module whose forward runs operators outside its children (an attention block's Q K^T, its
softmax, a residual add), so the MACs, bytes and time of the rows add up to the block's. MACs come from
the same fvcore count as ``profile`` (per module scope); bytes from the dispatch-level traffic counter,
attributed to the innermost listed module running; time from hooks around the listed modules' forwards
over repeated calls (synchronised on CUDA), as a share of the whole forward.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from attnzoo.blocks.adapters import ForwardWith, TokensFromFeatureMap

OWN = "(own ops)"
MODULE_COLUMNS = ("block", "shape", "module", "type", "params", "macs", "bytes_eager", "fwd_ms", "time_share")


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
    """Rows of the submodules of ``spec`` at ``shape`` down to ``depth`` (see the module docstring)."""
    from attnzoo.build import format_shape
    from attnzoo.errors import ConfigError
    from attnzoo.profiling.flops import count_macs
    from attnzoo.profiling.prepare import prepare
    from attnzoo.profiling.traffic import TrafficCounter

    if depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {depth}")
    prepared = prepare(spec, shape, options, overrides)
    module, inputs = prepared.eager, prepared.inputs
    root, listed = listed_modules(module, depth)
    named = dict(module.named_modules())

    with prepared.mode_context():
        count = count_macs(module, inputs)
    total_macs = count.macs
    macs = {name: count.by_module.get(name, 0) for name in listed}

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

        # Time: whole forwards with the hooks timing the listed modules, for about min_time seconds.
        scopes.timing = True
        sync = scopes._sync
        calls, spent = 0, 0.0
        with torch.inference_mode():
            prepared.forward()  # warm-up
            for name in scopes.seconds:
                scopes.seconds[name] = 0.0
            while calls < 3 or spent < options.min_time:
                sync()
                start = time.perf_counter()
                prepared.forward()
                sync()
                spent += time.perf_counter() - start
                calls += 1
    finally:
        scopes.close()

    total_ms = spent / calls * 1e3
    rows = []
    block_params = sum(p.numel() for p in module.parameters())
    shape_text = format_shape(shape)
    for name in listed:
        child = named[name]
        ms = scopes.seconds[name] / calls * 1e3
        rows.append({"block": spec.name, "shape": shape_text, "module": name[len(root) + 1:] if root else name,
                     "type": type(child).__name__, "params": sum(p.numel() for p in child.parameters()),
                     "macs": macs[name], "bytes_eager": moved.get(name, 0), "fwd_ms": round(ms, 4),
                     "time_share": round(ms / total_ms, 4) if total_ms else None})
    own_ms = max(0.0, total_ms - sum(r["fwd_ms"] for r in rows))
    listed_params = sum(r["params"] for r in rows)
    rows.append({"block": spec.name, "shape": shape_text, "module": OWN, "type": type(named[root]).__name__,
                 "params": block_params - listed_params, "macs": total_macs - sum(macs.values()),
                 "bytes_eager": moved.get(OWN, 0), "fwd_ms": round(own_ms, 4),
                 "time_share": round(own_ms / total_ms, 4) if total_ms else None})
    return rows


__all__ = ["MODULE_COLUMNS", "OWN", "listed_modules", "module_rows"]
