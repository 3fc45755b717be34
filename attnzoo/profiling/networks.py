"""Network rows: a plain network's row (block = none) and one row per block placed in it, at every shape.

Each row is measured by the runner's one path (:func:`attnzoo.profiling.runner.profile_one` on a
"network + block" built by :mod:`attnzoo.networks`), then completed here: the network, the placement, how
many blocks were placed, and the differences to the plain network's row of the same shape. A block that
cannot be placed in the network gets a ``skipped: why`` row and the run goes on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

if TYPE_CHECKING:
    from attnzoo.profiling.prepare import Prepared

SKIPPED = "skipped"


def attention_macs(prepared: "Prepared", calibration, row: Mapping[str, Any]) -> dict[str, Any]:
    """The placed blocks' share of the network's MACs, from the counter's per-module counts."""
    if not prepared.attention or not row.get("macs") or not prepared.macs_by_module:
        return {}
    placed = sum(prepared.macs_by_module.get(name, 0) for name in prepared.attention)
    return {"attn_macs_share": round(placed / row["macs"], 4)}


def attention_time(prepared: "Prepared", calibration, row: Mapping[str, Any]) -> dict[str, Any]:
    """The placed blocks' share of an eager forward's time: forward hooks (synchronised on CUDA) time the
    blocks over three whole forwards (the by-module machinery). The share is a ratio inside the same
    forwards, and the forward timing before it has warmed the network up: three calls keep a whole
    network's row short."""
    import torch

    from attnzoo.profiling.modules import _Scopes

    if not prepared.attention:
        return {}
    scopes = _Scopes(prepared.eager, prepared.attention, prepared.device)
    calls, spent = 0, 0.0
    try:
        with torch.inference_mode(), prepared.autocast():
            scopes.timing = True
            while calls < 3:
                scopes._sync()
                start = time.perf_counter()
                prepared.eager(*prepared.inputs)
                scopes._sync()
                spent += time.perf_counter() - start
                calls += 1
    finally:
        scopes.close()
    return {"attn_time_share": round(sum(scopes.seconds.values()) / spent, 4) if spent else None}


def _delta(row: Mapping[str, Any], plain: Mapping[str, Any], column: str, digits: int | None = None):
    from attnzoo.results import number

    mine, base = number(row.get(column)), number(plain.get(column))  # rows read back from CSV hold text
    if mine is None or base is None:
        return None
    return round(mine - base, digits) if digits is not None else int(mine - base)


def add_deltas(row: dict[str, Any], plain: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row's differences to the plain network's row (nothing when either did not run)."""
    if plain is None or str(plain.get("status")) != "ok" or str(row.get("status")) != "ok":
        return row
    row.update(added_params=_delta(row, plain, "params"), added_macs=_delta(row, plain, "macs"),
               added_fwd_ms=_delta(row, plain, "fwd_ms", 4), added_train_ms=_delta(row, plain, "train_ms", 4))
    return row


_SAME_RUN = ("network", "shape", "mode", "compile", "amp", "channels_last", "dtype", "device", "threads")


def _key(row: Mapping[str, Any]) -> tuple:
    return tuple(str(row.get(column)) for column in _SAME_RUN)


def with_deltas(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows as they come, each network row given its differences to the plain row of its network, shape and
    settings that came before it (a plan puts the plain row first)."""
    plain: dict[tuple, Mapping[str, Any]] = {}
    for row in rows:
        if row.get("network"):
            if row.get("block") == "none":
                plain[_key(row)] = row
            else:
                add_deltas(row, plain.get(_key(row)))
        yield row


def add_network_deltas(rows: list[dict[str, Any]]) -> bool:
    """Fill the differences of every network row whose plain row is among ``rows``; True when any was."""
    plain = {_key(r): r for r in rows if r.get("network") and r.get("block") == "none"}
    changed = False
    for row in rows:
        if row.get("network") and row.get("block") != "none" and _key(row) in plain:
            before = row.get("added_params")
            add_deltas(row, plain[_key(row)])
            changed = changed or row.get("added_params") != before
    return changed


def plan_network_units(names, resolved, dims, networks, placement, stages, settings, overrides, registry) -> list:
    """The units of blocks in networks: per network and shape, the plain network (block "none"), then each
    block with the placement it takes there. Checks every network, shape, placement and ``--stages`` now
    (one AttnzooError, before anything runs). A block the network cannot hold, named or matched by a
    wildcard, is a unit whose row says ``skipped`` and why (with the run's settings); the others are measured."""
    from attnzoo.campaign.units import Unit
    from attnzoo.errors import ConfigError
    from attnzoo.networks.build import available_stages, check_input, parse_stages
    from attnzoo.networks.cards import PLACEMENTS, choose_placement, resolve_networks
    from attnzoo.registry import get_spec

    if placement is not None and placement not in PLACEMENTS:
        raise ConfigError(f"unknown placement '{placement}'; expected one of {', '.join(PLACEMENTS)}")
    cards = resolve_networks(networks, registry)
    wanted = parse_stages(stages)
    specs = [get_spec(name, registry) for name in resolved]
    registry = [str(r) for r in registry]
    units = []
    for card in cards:
        for shape in dims:
            check_input(card, shape)
        if placement is not None and placement not in card.placements:  # the user's option, whatever the block
            raise ConfigError(f"{card.name} offers {', '.join(card.placements)}, not {placement}")
        chosen: dict[str, str | None] = {}
        for spec in specs:
            where, why = choose_placement(spec, card, placement)
            chosen[spec.name] = where
        if wanted is not None:
            for where in sorted({w for w in chosen.values() if w}):
                have = available_stages(card, where, dims[0])
                missing = [s for s in wanted if s not in have]
                if missing:
                    raise ConfigError(f"{card.name} has stages {', '.join(map(str, have))} for the {where} placement; "
                                      f"--stages {', '.join(map(str, missing))} is not among them")
        for shape in dims:
            units.append(Unit.make("profile", "none", shape, settings, None, network=card.name, registry=registry))
            for spec in specs:
                units.append(Unit.make("profile", spec.name, shape, settings, overrides, network=card.name,
                                       placement=chosen[spec.name] or placement, stages=wanted, registry=registry))
    return units


def run_network_unit(unit, options, calibration) -> dict[str, Any]:
    """The row of a network unit: measured by the runner's one path, or ``skipped`` with why."""
    from attnzoo.networks.build import NetworkPlan
    from attnzoo.networks.cards import choose_placement, get_network
    from attnzoo.profiling.runner import blank_row, profile_one
    from attnzoo.registry import get_spec

    card = get_network(unit.network, unit.registry)
    if unit.block == "none":
        return profile_one(None, unit.shape, options, None, calibration, NetworkPlan(card))
    spec = get_spec(unit.block, unit.registry)
    where, why = choose_placement(spec, card, unit.placement)
    if where is None:
        row = blank_row(spec.name, unit.shape_text, options, unit.overrides_dict)
        row.update(status=f"{SKIPPED}: {why}", network=card.name, placement=unit.placement or "")
        return row
    stages = tuple(unit.stages) if unit.stages is not None else None
    return profile_one(spec, unit.shape, options, unit.overrides_dict, calibration, NetworkPlan(card, where, stages))


__all__ = ["SKIPPED", "add_deltas", "add_network_deltas", "attention_macs", "attention_time", "plan_network_units",
           "run_network_unit", "with_deltas"]
