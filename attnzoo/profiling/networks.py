"""The units of network rows: a plain network's (block = none) and one per block placed in it, at every shape.

Each is measured by the runner's one path (:func:`attnzoo.profiling.runner.run_unit`, on a "network +
block" built by :mod:`attnzoo.networks`); a row's differences to the plain network's row of the same shape
are pure row arithmetic (:func:`attnzoo.rowdata.with_deltas`). A block that cannot be placed in the network
gets a ``skipped: why`` row and the run goes on.
"""

from __future__ import annotations

SKIPPED = "skipped"


def plan_network_units(names, resolved, dims, networks, placement, stages, settings, overrides, registry) -> list:
    """The units of blocks in networks: per network and shape, the plain network (block "none"), then each
    block with the placement it takes there. Checks every network, shape, placement and ``--stages`` now
    (one AttnzooError, before anything runs). A block the network cannot hold, named or matched by a
    wildcard, is a unit whose row says ``skipped`` and why (with the run's settings); the others are measured."""
    from attnzoo.errors import ConfigError
    from attnzoo.networks.build import available_stages, check_input, parse_stages
    from attnzoo.networks.cards import PLACEMENTS, choose_placement, resolve_networks
    from attnzoo.registry import get_spec
    from attnzoo.unit import Unit

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


__all__ = ["SKIPPED", "plan_network_units"]
