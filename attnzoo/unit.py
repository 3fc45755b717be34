"""A unit of work: one block (or network + block) at one shape with one set of settings, and its stable id.

The type every layer shares (a bottom layer: docs/ARCHITECTURE.md): runners plan and read units, the
campaign runs them, neither imports the other. Never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


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
        from attnzoo._version import __version__

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


def unique(units: Sequence[Unit]) -> list[Unit]:
    """The units in order, each id once (a suite may name a block at a shape twice)."""
    seen: dict[str, Unit] = {}
    for unit in units:
        seen.setdefault(unit.id, unit)
    return list(seen.values())


__all__ = ["Unit", "unique"]
