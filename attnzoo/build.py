"""From a card and an input shape to a module and example inputs.

Shapes are ``(B, C, H, W)`` for every block, or ``(B, N, C)`` for token (BNC) blocks. A BNC block given a
4-D shape is wrapped in :class:`attnzoo.blocks.adapters.TokensFromFeatureMap`, which flattens the feature
map to ``(B, H*W, C)`` with a permute, so every block built from a 4-D shape maps BCHW to BCHW.
"""

from __future__ import annotations

import ast
import importlib
import math
import operator
import re
import tomllib
from typing import Any, Sequence

from attnzoo.errors import ConfigError, ShapeError
from attnzoo.registry import BlockSpec
from attnzoo.versions import check_supported

Shape = tuple[int, ...]
_SYMBOLS = frozenset("BCHWN")

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Div: operator.truediv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def parse_shape(text: str | Sequence[int]) -> Shape:
    """``"128,256,24,24"`` (or ``x`` separated) to a tuple of positive ints; 3 or 4 dimensions."""
    if isinstance(text, str):
        parts = re.split(r"[,x]", text.replace(" ", ""))
        if not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
            raise ShapeError(f"malformed shape '{text}': expected integers like 128,256,24,24")
        dims = tuple(int(p) for p in parts)
    else:
        dims = tuple(int(d) for d in text)
    if len(dims) not in (3, 4):
        raise ShapeError(f"shape {format_shape(dims)} has {len(dims)} dimensions; give B,C,H,W (or B,N,C for token blocks)")
    low = [d for d in dims if d < 1]
    if low:
        raise ShapeError(f"shape {format_shape(dims)}: every dimension must be a positive integer, "
                         f"and {low[0]} is not")
    return dims


def format_shape(shape: Sequence[int]) -> str:
    return ",".join(str(d) for d in shape)


def shape_symbols(shape: Shape) -> dict[str, int]:
    """The symbols a card may use: B, C, H, W, N. A (B, N, C) shape has H = W = sqrt(N) when N is square."""
    if len(shape) == 4:
        b, c, h, w = shape
        return {"B": b, "C": c, "H": h, "W": w, "N": h * w}
    b, n, c = shape
    symbols = {"B": b, "N": n, "C": c}
    side = math.isqrt(n)
    if side * side == n:
        symbols.update(H=side, W=side)
    return symbols


#: The only calls a card's ``macs`` formula may make (kernel sizes derived from C, rounding, group counts).
FORMULA_FUNCTIONS = {"min": min, "max": max, "abs": abs, "int": int, "ceil": math.ceil, "floor": math.floor,
                     "log2": math.log2, "sqrt": math.sqrt, "gcd": math.gcd}


def evaluate(expr: str, symbols: dict[str, int], functions: dict[str, Any] | None = None) -> int | float:
    """Evaluate an arithmetic expression over the shape symbols (no attributes; calls only to ``functions``)."""
    functions = functions or {}

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in symbols:
                raise ShapeError(f"'{expr}' needs {node.id}: give a B,C,H,W shape (B,N,C gives H and W only "
                                 "when N is a square)")
            return symbols[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions
                and not node.keywords):
            return functions[node.func.id](*(walk(arg) for arg in node.args))
        raise ValueError(f"unsupported expression '{expr}'")

    return walk(ast.parse(expr, mode="eval"))


def _is_expression(value: str) -> bool:
    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError:
        return False
    return all(not isinstance(n, ast.Name) or n.id in _SYMBOLS for n in ast.walk(tree)) and any(
        isinstance(n, ast.Name) for n in ast.walk(tree))


def resolve_args(spec: BlockSpec, shape: Shape, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constructor keywords for ``spec`` at ``shape``: card args with shape expressions evaluated."""
    symbols = shape_symbols(shape)
    kwargs: dict[str, Any] = {}
    for key, value in {**spec.args, **(overrides or {})}.items():
        try:
            kwargs[key] = evaluate(value, symbols) if isinstance(value, str) and _is_expression(value) else value
        except ShapeError as exc:
            raise ShapeError(f"{spec.name} cannot take shape {format_shape(shape)}: {exc}") from None
    return kwargs


def stated_macs(spec: BlockSpec, shape: str | Sequence[int], overrides: dict[str, Any] | None = None) -> int:
    """The card's ``macs`` formula at ``shape``: MACs of one forward, over the shape symbols and the resolved
    constructor arguments (numbers and booleans; e.g. ``"B*2*channels*(channels//reduction)"``)."""
    if not spec.macs:
        raise ConfigError(f"{spec.name}: the card states no 'macs' formula")
    dims = parse_shape(shape)
    names = {k: v for k, v in resolve_args(spec, dims, overrides).items() if isinstance(v, (int, float))}
    return int(evaluate(spec.macs, {**names, **shape_symbols(dims)}, FORMULA_FUNCTIONS))


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value (``16``, ``0.5``, ``true``, ``"avg"``, ``[3, 5]``); bare words are strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ConfigError(f"--set expects key=value, got '{text}'")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import '{module_name}' for target '{target}': {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"'{module_name}' has no attribute '{attr}' (target '{target}')") from None
    return obj


def _shape_from_expression(spec: BlockSpec, expr: str, shape: Shape) -> Shape:
    dims = tuple(int(evaluate(part, shape_symbols(shape))) for part in expr.split(","))
    if any(d < 1 for d in dims):
        raise ShapeError(f"{spec.name} cannot take shape {format_shape(shape)}: {expr} would be {format_shape(dims)}")
    return dims


def input_shapes(spec: BlockSpec, shape: Shape) -> list[Shape]:
    """The shape of each example input: the given shape, or the card's expressions evaluated at it."""
    if not spec.input_shapes:
        return [shape] * spec.inputs
    return [_shape_from_expression(spec, expr, shape) for expr in spec.input_shapes]


def output_shape(spec: BlockSpec, shape: Shape) -> Shape:
    """The shape the block returns for input ``shape``: the first input's, unless the card says otherwise."""
    return _shape_from_expression(spec, spec.output_shape, shape) if spec.output_shape else input_shapes(spec, shape)[0]


def check_keywords(spec: BlockSpec, constructor: Any, kwargs: dict[str, Any]) -> None:
    """Raise ConfigError when the card's arguments (or ``--set``) do not fit the constructor's signature.

    Checked against the signature rather than by catching TypeError from the call, so that a TypeError
    raised inside a constructor (a bug in the block) is not reported as a configuration error.
    """
    import inspect

    try:
        signature = inspect.signature(constructor)
    except (TypeError, ValueError):  # no signature to read (some builtins): the call will tell
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{spec.name}: {exc} (target '{spec.target}')") from None


def check_layout(spec: BlockSpec, shape: Shape) -> None:
    """Raise ShapeError when ``shape`` has a number of dimensions the block's layout cannot take."""
    if spec.layout == "BNC" and len(shape) not in (3, 4):
        raise ShapeError(f"{spec.name} takes B,C,H,W or B,N,C, got {format_shape(shape)}")
    if spec.layout == "BCHW" and len(shape) != 4:
        raise ShapeError(f"{spec.name} works on feature maps: give B,C,H,W, got {format_shape(shape)}")


def build_module(spec: BlockSpec, shape: Shape, overrides: dict[str, Any] | None = None):
    """Construct the block for ``shape`` (wrapping BNC blocks for 4-D shapes). Raises ShapeError or ConfigError."""
    check_supported()
    import torch.nn as nn

    from attnzoo.blocks.adapters import ForwardWith, TokensFromFeatureMap

    check_layout(spec, shape)
    kwargs = resolve_args(spec, shape, overrides)
    constructor = import_target(spec.target)
    check_keywords(spec, constructor, kwargs)
    try:
        module = constructor(**kwargs)  # any other error inside the constructor is a bug: let it surface
    except (ValueError, AssertionError) as exc:
        raise ShapeError(f"{spec.name} cannot take shape {format_shape(shape)}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{spec.name}: target '{spec.target}' did not build an nn.Module")
    if spec.repeat_input > 1 or spec.forward_args:
        module = ForwardWith(module, spec.repeat_input, spec.forward_args)
    if spec.layout == "BNC" and len(shape) == 4:
        module = TokensFromFeatureMap(module, per_pixel_output=not spec.output_shape)
    return module


def create(spec: BlockSpec, shape: str | Sequence[int], overrides: dict[str, Any] | None = None,
           device: str = "cpu", dtype: Any = None, seed: int = 0):
    """The block built for ``shape`` and a tuple of example inputs (seeded normal noise) on ``device``."""
    import torch

    dims = parse_shape(shape)
    module = build_module(spec, dims, overrides)
    generator = torch.Generator().manual_seed(seed)
    inputs = tuple(torch.randn(s, generator=generator) for s in input_shapes(spec, dims))
    module = module.to(device=device, dtype=dtype)
    inputs = tuple(x.to(device=device, dtype=dtype) for x in inputs)
    return module, inputs
