"""A unit of work: one block (or network + block) at one shape with one set of settings, and its stable id.

Never imports torch: the driver of a campaign plans, shards, merges and resumes units without it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

#: How each kind of unit is measured: "module:function", imported where the unit runs (a Ray worker imports
#: only what its unit needs). The function takes ``(unit, context)`` and returns one row (a dict).
RUNNERS: dict[str, str] = {
    "profile": "attnzoo.profiling.runner:run_unit",
}


def register_runner(kind: str, target: str) -> None:
    """Name the function that measures units of ``kind`` ("module:function"); e.g. the train package's."""
    if ":" not in target:
        raise ValueError(f"runner target '{target}' is not 'module:function'")
    RUNNERS[kind] = target


def _frozen(mapping: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    # Lists become tuples so that the unit stays hashable; JSON writes both the same way.
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in (mapping or {}).items()))


@dataclass(frozen=True)
class Unit:
    """What one row measures. ``settings`` are the measurement settings of the unit's kind (for a profile:
    the fields of ProfileOptions); ``overrides`` the constructor keywords (``--set``). ``network``,
    ``placement`` and ``stages`` say where the block sits in a network (None: the block alone).
    ``registry`` (extra card folders) says where to find the card; it is not part of the id."""

    kind: str
    block: str
    shape: tuple[int, ...]
    settings: tuple[tuple[str, Any], ...] = ()
    overrides: tuple[tuple[str, Any], ...] = ()
    network: str | None = None
    placement: str | None = None
    stages: tuple[Any, ...] | None = None
    registry: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def make(cls, kind: str, block: str, shape: Sequence[int], settings: Mapping[str, Any] | None = None,
             overrides: Mapping[str, Any] | None = None, network: str | None = None, placement: str | None = None,
             stages: Sequence[Any] | None = None, registry: Sequence[str] = ()) -> "Unit":
        return cls(kind=kind, block=str(block), shape=tuple(int(d) for d in shape), settings=_frozen(settings),
                   overrides=_frozen(overrides), network=network, placement=placement,
                   stages=None if stages is None else tuple(stages), registry=tuple(str(r) for r in registry))

    @property
    def settings_dict(self) -> dict[str, Any]:
        return dict(self.settings)

    @property
    def overrides_dict(self) -> dict[str, Any]:
        return dict(self.overrides)

    @property
    def shape_text(self) -> str:
        return ",".join(str(d) for d in self.shape)

    @property
    def label(self) -> str:
        """How a person names the unit in a message: "cbam 1,64,8,8" (with the network when there is one)."""
        where = f"{self.network}[{self.placement}] + " if self.network else ""
        return f"{where}{self.block} {self.shape_text}"

    def identity(self) -> dict[str, Any]:
        """Everything the id is derived from, as JSON-ready data."""
        from attnzoo import __version__

        return {"kind": self.kind, "block": self.block, "shape": list(self.shape), "settings": dict(self.settings),
                "overrides": dict(self.overrides), "network": self.network, "placement": self.placement,
                "stages": None if self.stages is None else list(self.stages), "attnzoo_version": __version__}

    @property
    def id(self) -> str:
        """"u" and 15 hex digits of a SHA-256 of :meth:`identity`: the same on every machine and in every run
        for the same settings and attnzoo version; any change of a setting, a shape or the version gives another
        id. The letter keeps a CSV reader from taking an all-digit id for a number."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return "u" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:15]


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


def unique(units: Sequence[Unit]) -> list[Unit]:
    """The units in order, each id once (a suite may name a block at a shape twice)."""
    seen: dict[str, Unit] = {}
    for unit in units:
        seen.setdefault(unit.id, unit)
    return list(seen.values())


__all__ = ["RUNNERS", "Unit", "register_runner", "runner_for", "runner_target", "unique"]
