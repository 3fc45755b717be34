"""Read a constructor's signature from source, without importing the module (so `info` never loads torch)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def _module_file(module_name: str) -> Path | None:
    top, *rest = module_name.split(".")
    spec = importlib.util.find_spec(top)  # a top-level find_spec imports nothing
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin else None
    if not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)), *rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def constructor_defaults(target: str) -> dict[str, str] | None:
    """``{"channels": "required", "reduction": "16", ...}`` for ``module:Class``, or None when not found."""
    module_name, _, class_name = target.partition(":")
    try:
        path = _module_file(module_name)
    except (ImportError, ValueError):
        return None
    if path is None:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return _signature(item.args)
            return {}
    return None


def _signature(args: ast.arguments) -> dict[str, str]:
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = {}
    for arg, default in zip(positional, defaults):
        if arg.arg != "self":
            out[arg.arg] = "required" if default is None else ast.unparse(default)
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out[arg.arg] = "required" if default is None else ast.unparse(default)
    return out
