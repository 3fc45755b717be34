"""Read a constructor's signature from source, without importing the module (so `info` never loads torch)."""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
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


def _constructor(target: str) -> ast.arguments | None | bool:
    """The ``__init__`` arguments of ``module:Class`` read from source; True for a class found without an
    ``__init__`` of its own (it takes what its base takes); None when the class is not found."""
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
                    return item.args
            return True
    return None


def constructor_defaults(target: str) -> dict[str, str] | None:
    """``{"channels": "required", "reduction": "16", ...}`` for ``module:Class``, or None when not found."""
    args = _constructor(target)
    if args is None:
        return None
    return {} if args is True else _signature(args)


@dataclass(frozen=True)
class Parameter:
    """One constructor argument as the source spells it: its default and annotation (empty when absent)."""

    name: str
    default: str = ""  # the default's source, "" when the argument is required
    annotation: str = ""


@dataclass(frozen=True)
class Signature:
    """A constructor's arguments read from source; ``open`` when it also takes ``**kwargs`` (any keyword)."""

    parameters: dict[str, Parameter]
    open: bool = False


def constructor_signature(target: str) -> Signature | None:
    """The arguments of ``module:Class``'s constructor with their defaults and annotations, read from source
    without importing it; None when the source or the class is not found, or its ``__init__`` is inherited."""
    args = _constructor(target)
    if args is None or args is True:
        return None
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    parameters = {arg.arg: Parameter(arg.arg, "" if default is None else ast.unparse(default),
                                     ast.unparse(arg.annotation) if arg.annotation is not None else "")
                  for arg, default in pairs if arg.arg != "self"}
    return Signature(parameters, open=args.kwarg is not None)


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
