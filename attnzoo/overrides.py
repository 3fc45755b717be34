"""``--set`` overrides checked before anything is built: which blocks take a key, and whether a value is one
the argument accepts.

What an argument accepts is read without importing torch: its annotation and default from the constructor's
source (:mod:`attnzoo.introspect`), else the card's value. A count or a size (reduction, num_heads,
kernel_size, groups, ...) must be a positive integer, any other integer 0 or more; a float must be finite,
a dropout a probability; a flag true or false. The block itself still checks what depends on the shape
(channels divisible by num_heads, an odd kernel): that is a row's failure, said in its status.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from attnzoo.errors import ConfigError

#: Integer arguments that count or size something: 0 or less cannot build the block.
_POSITIVE = re.compile(r"^num_|(^|_)(reduction|heads?|groups|channels|dim|ratio|window|stride|radix|cardinality|coef"
                       r"|features|landmarks|clusters|tokens|len|height|width|factor|dilation|recurrence|paths|k"
                       r"|spatial|(kernel|window|block|patch|memory|key|output)_size)$")
_PROBABILITY = re.compile(r"drop")
_POSITIVE_FLOAT = re.compile(r"^(eps|epsilon|e_lambda)$")
_KINDS = {"int": "int", "float": "float", "bool": "bool", "str": "str", "tuple": "list", "list": "list",
          "Sequence": "list"}


@dataclass(frozen=True)
class Setting:
    """One ``--set`` item: ``block`` is None for a plain ``KEY=VALUE`` (every named block that takes it)."""

    text: str
    block: str | None
    key: str
    value: Any


def parse_setting(text: str) -> Setting:
    """``KEY=VALUE`` or ``BLOCK.KEY=VALUE`` (a TOML value; a bare word is a string)."""
    from attnzoo.build import parse_override

    head, sep, raw = text.partition("=")
    block, dot, key = head.strip().rpartition(".")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value or block.key=value, got '{text}'")
    key, value = parse_override(f"{key}={raw}")
    if dot and not block.strip():
        raise ConfigError(f"--set {text}: give the block before the dot (BLOCK.KEY=VALUE)")
    return Setting(text, block.strip() if dot else None, key, value)


def _kinds(annotation: str) -> set[str]:
    """The kinds of value an annotation allows: int, float, bool, str, list (None is never given by --set)."""
    try:
        tree = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return set()
    found: set[str] = set()

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            walk(node.left)
            walk(node.right)
        elif isinstance(node, ast.Subscript):
            base = ast.unparse(node.value).rsplit(".", 1)[-1]
            if base in ("Optional", "Union"):
                inner = node.slice
                for item in inner.elts if isinstance(inner, ast.Tuple) else [inner]:
                    walk(item)
            elif base in _KINDS:
                found.add(_KINDS[base])
            else:
                found.add("any")
        elif isinstance(node, (ast.Name, ast.Attribute)):
            name = ast.unparse(node).rsplit(".", 1)[-1]
            if name != "None":
                found.add(_KINDS.get(name, "any"))
        elif isinstance(node, ast.Constant) and node.value is None:
            pass
        else:
            found.add("any")

    walk(tree)
    return found


def _kind_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, (list, tuple)):
        return "list"
    return None


@dataclass(frozen=True)
class Argument:
    """What one constructor argument of a block accepts."""

    name: str
    kinds: frozenset[str]  # empty: anything (nothing known)
    example: Any = None  # the card's value, else the constructor's default

    def accepts(self) -> str:
        """In words: "a positive integer", "true or false", ..."""
        words = []
        for kind in sorted(self.kinds, key=["bool", "int", "float", "str", "list"].index):
            if kind == "int":
                words.append("a positive integer" if _POSITIVE.search(self.name) else
                             "an integer" if self.name == "seed" else "an integer, 0 or more")
            elif kind == "float":
                words.append("a probability from 0 to 1" if _PROBABILITY.search(self.name) else
                             "a positive number" if _POSITIVE_FLOAT.search(self.name) else "a finite number")
            elif kind == "bool":
                words.append("true or false")
            elif kind == "str":
                words.append("a word")
            elif kind == "list":
                words.append("a list like [3, 5]")
        text = " or ".join(words)
        if self.example is not None and not isinstance(self.example, str):
            text += f" (default {_toml(self.example)})"
        elif isinstance(self.example, str) and "str" in self.kinds:
            text += f' (default "{self.example}")'
        return text

    def problem(self, value: Any) -> bool:
        """Whether ``value`` is not one this argument accepts."""
        if not self.kinds or "any" in self.kinds:
            return False
        kind = _kind_of(value)
        if kind == "int" and "int" not in self.kinds and "float" in self.kinds:
            kind = "float"
        if kind is None or kind not in self.kinds:
            return True
        if kind == "int":
            low = 1 if _POSITIVE.search(self.name) else None if self.name == "seed" else 0
            return low is not None and value < low
        if kind == "float":
            if not math.isfinite(value):
                return True
            if _PROBABILITY.search(self.name):
                return not 0 <= value <= 1
            if _POSITIVE_FLOAT.search(self.name):
                return value <= 0
        return False


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Arguments:
    """A block's constructor arguments as far as they are known without importing it."""

    block: str
    arguments: dict[str, Argument]
    known: bool  # False: the constructor's source was not found (or it takes **kwargs): any key may be right

    def takes(self, key: str) -> bool:
        return not self.known or key in self.arguments

    def unknown_key(self, setting: Setting) -> ConfigError:
        names = list(self.arguments)
        close = difflib.get_close_matches(setting.key, names, n=2, cutoff=0.6)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else f"it takes {', '.join(names)}" if names else "it takes no arguments")
        return ConfigError(f"--set {setting.text}: {self.block} has no argument '{setting.key}'; {hint}")


def block_arguments(spec) -> Arguments:
    """What ``spec``'s constructor takes: from its source (annotations, defaults) and its card."""
    from attnzoo.introspect import constructor_signature

    signature = constructor_signature(spec.target)
    names = list(signature.parameters) if signature is not None else []
    names += [key for key in spec.args if key not in names]
    arguments = {}
    for name in names:
        parameter = signature.parameters.get(name) if signature is not None else None
        kinds = _kinds(parameter.annotation) if parameter is not None and parameter.annotation else set()
        default = None
        if parameter is not None and parameter.default:
            try:
                default = ast.literal_eval(parameter.default)
            except (ValueError, SyntaxError):
                default = None
        card = spec.args.get(name)
        symbolic = isinstance(card, str) and any(ch in card for ch in "BCHWN") and _is_shape_expression(card)
        example = default if card is None or symbolic else card
        if not kinds:
            for seen in (default, None if symbolic else card):
                if _kind_of(seen) is not None:
                    kinds = {_kind_of(seen)}
                    break
                if isinstance(seen, str):
                    kinds = {"str"}
                    break
        if symbolic:
            kinds = kinds or {"int"}
        arguments[name] = Argument(name, frozenset(kinds), example)
    return Arguments(spec.name, arguments, known=signature is not None and not signature.open)


def _is_shape_expression(text: str) -> bool:
    from attnzoo.build import _is_expression

    return _is_expression(text)


def check_value(arguments: Arguments, setting: Setting, shapes: Sequence[Sequence[int]] = ()) -> None:
    """Raise ConfigError when ``setting``'s value is not one its argument accepts. A shape expression
    (``C//2``) is checked at every shape."""
    from attnzoo.build import evaluate, format_shape, shape_symbols
    from attnzoo.errors import ShapeError

    argument = arguments.arguments.get(setting.key)
    if argument is None:
        return
    value = setting.value
    if isinstance(value, str) and _is_shape_expression(value) and argument.kinds & {"int", "float"}:
        for shape in shapes:
            try:
                result = evaluate(value, shape_symbols(tuple(shape)))
            except (ShapeError, ZeroDivisionError, ValueError, TypeError):
                continue  # the build says why the block cannot take that shape
            if isinstance(result, float) and result.is_integer() and "int" in argument.kinds:
                result = int(result)
            if argument.problem(result):
                raise ConfigError(f"--set {setting.text}: {setting.key} would be {_toml(result)} at shape "
                                  f"{format_shape(shape)}; {arguments.block}'s {setting.key} takes "
                                  f"{argument.accepts()}")
        return
    if argument.problem(value):
        shown = f"'{value}'" if isinstance(value, str) else _toml(value)
        raise ConfigError(f"--set {setting.text}: {arguments.block}'s {setting.key} takes {argument.accepts()}, "
                          f"not {shown}")


def assign(items: Iterable[str], specs: Mapping[str, Any], shapes: Sequence[Sequence[int]] = ()) -> dict[str, dict]:
    """The overrides of each block in ``specs`` (name -> card) from ``--set`` items, checked.

    ``BLOCK.KEY=VALUE`` sets one block's argument (BLOCK must be among ``specs``); a plain ``KEY=VALUE`` sets
    it in every block that takes it, and is refused when none does. A later item wins over an earlier one,
    and a block's own item over a plain one whatever their order.
    """
    settings = [parse_setting(item) for item in items or []]
    per_block: dict[str, dict] = {name: {} for name in specs}
    if not settings:
        return per_block
    arguments = {name: block_arguments(spec) for name, spec in specs.items()}
    own: dict[str, dict] = {name: {} for name in specs}
    for setting in settings:
        if setting.block is not None:
            if setting.block not in specs:
                close = difflib.get_close_matches(setting.block, list(specs), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"--set {setting.text}: '{setting.block}' is not one of the blocks named "
                                  f"({', '.join(specs)}){hint}")
            found = arguments[setting.block]
            if not found.takes(setting.key):
                raise found.unknown_key(setting)
            check_value(found, setting, shapes)
            own[setting.block][setting.key] = setting.value
            continue
        takers = [name for name in specs if arguments[name].takes(setting.key)]
        if not takers:
            if len(specs) == 1:
                raise next(iter(arguments.values())).unknown_key(setting)
            every = sorted({key for found in arguments.values() for key in found.arguments})
            close = difflib.get_close_matches(setting.key, every, n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"--set {setting.text}: none of the blocks named ({', '.join(specs)}) takes "
                              f"'{setting.key}'{hint}")
        for name in takers:
            check_value(arguments[name], setting, shapes)
            per_block[name][setting.key] = setting.value
    return {name: {**per_block[name], **own[name]} for name in specs}
