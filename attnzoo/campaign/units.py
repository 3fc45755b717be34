"""How each kind of unit is measured: the runners registered by name, imported only where a unit runs.

The campaign imports no runner: it runs a unit through the "module:function" registered for its kind
(attnzoo/__init__.py registers attnzoo's own; a remote executor ships the string, so a Ray worker imports
only what its unit needs). :class:`Unit` itself lives in :mod:`attnzoo.unit`, below runners and campaign.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from attnzoo.unit import Unit, unique

#: How each kind of unit is measured: "module:function", imported where the unit runs. The function takes
#: ``(unit, context)`` (context: attnzoo.campaign.executors.RunContext) and returns one row (a dict).
RUNNERS: dict[str, str] = {}
#: Per-node work of a kind, run once on each node of a cluster before its units (``(unit, context)``, like a
#: runner; its result is not kept): what a runner needs on the machine before it measures, e.g. ceilings.
NODE_SETUP: dict[str, str] = {}


def _check_target(target: str) -> str:
    if ":" not in target:
        raise ValueError(f"runner target '{target}' is not 'module:function'")
    return target


def register_runner(kind: str, target: str, node_setup: str | None = None) -> None:
    """Name the function that measures units of ``kind`` ("module:function") and, optionally, its per-node
    work (``node_setup``, "module:function")."""
    RUNNERS[kind] = _check_target(target)
    if node_setup is not None:
        NODE_SETUP[kind] = _check_target(node_setup)
    else:
        NODE_SETUP.pop(kind, None)


def node_setup_target(kind: str) -> str | None:
    """The "module:function" of ``kind``'s per-node work, or None."""
    return NODE_SETUP.get(kind)


def runner_target(kind: str) -> str:
    """The "module:function" that measures units of ``kind`` (a remote executor ships this string: the
    registry is this process's)."""
    try:
        return RUNNERS[kind]
    except KeyError:
        raise ValueError(f"no runner for units of kind '{kind}' (known: {', '.join(sorted(RUNNERS))})") from None


def runner_for(kind: str, target: str | None = None) -> Callable[..., dict[str, Any]]:
    """The function that measures units of ``kind`` (or the one ``target`` names), imported on first use."""
    module, _, name = (target or runner_target(kind)).partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["NODE_SETUP", "RUNNERS", "Unit", "node_setup_target", "register_runner", "runner_for", "runner_target",
           "unique"]
