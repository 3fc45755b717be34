"""Networks with blocks: build a backbone from its card at an input shape, and attach blocks to any model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from attnzoo.build import _is_expression, build_module, evaluate, format_shape, import_target, parse_shape
from attnzoo.errors import ConfigError, ShapeError
from attnzoo.networks.cards import NetworkSpec, block_placements, choose_placement, why_no_placement
from attnzoo.networks.placements import PLACEMENT_TYPES, probe_shapes


def check_input(network: NetworkSpec, shape: Sequence[int]) -> tuple[int, int, int, int]:
    """A network takes B,3,H,W images (H and W multiples of the card's ``multiple``, equal when ``square``)."""
    dims = parse_shape(shape)
    if len(dims) != 4 or dims[1] != 3:
        raise ShapeError(f"{network.name} takes B,3,H,W images; got {format_shape(dims)}")
    _, _, h, w = dims
    if network.square and h != w:
        raise ShapeError(f"{network.name} takes square images (H = W); got {format_shape(dims)}")
    if h % network.multiple or w % network.multiple:
        raise ShapeError(f"{network.name} takes H and W in multiples of {network.multiple}; got {format_shape(dims)}")
    return dims  # type: ignore[return-value]


def build_network(network: NetworkSpec, shape: Sequence[int]) -> nn.Module:
    """The plain network of ``network``'s card, built for input ``shape`` (no weights downloaded)."""
    b, c, h, w = check_input(network, shape)
    symbols = {"B": b, "C": c, "H": h, "W": w}
    kwargs = {k: int(evaluate(v, symbols)) if isinstance(v, str) and _is_expression(v) else v
              for k, v in network.args.items()}
    builder = import_target(network.builder)
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{network.name}: builder '{network.builder}' refused its arguments: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{network.name}: builder '{network.builder}' did not build an nn.Module")
    return model


def parse_stages(stages: Sequence[int] | str | None) -> tuple[int, ...] | None:
    """``--stages 3,4`` (or a sequence of ints) to sorted stage numbers; None: no limit."""
    if stages is None or stages == "":
        return None
    if isinstance(stages, str):
        parts = [p for p in stages.replace(" ", "").split(",") if p]
        if not parts or not all(p.isdigit() for p in parts):
            raise ConfigError(f"--stages expects numbers like 3,4, got '{stages}'")
        stages = [int(p) for p in parts]
    return tuple(sorted(set(int(s) for s in stages)))


def attach_blocks(model: nn.Module, spec, placement: str | None = None, stages: Sequence[int] | str | None = None,
                  shape: Sequence[int] = (1, 3, 224, 224), overrides: Mapping[str, Any] | None = None,
                  where: str = "") -> tuple[str, list[str], list[int]]:
    """Insert ``spec``'s block into ``model`` in place; returns ``(placement, qualified names of the blocks,
    the stages that hold them)``.

    ``placement`` None takes the first of the block's placements whose places exist in ``model``.
    ``stages`` limits where blocks go (1-based). ``shape`` is the model's input, for the shapes the blocks
    are built at. Raises ConfigError when there is no place (saying what was looked for), ShapeError when
    the block cannot take the shape at some place.
    """
    where = where or type(model).__name__
    supported = block_placements(spec)
    if not supported:
        raise ConfigError(why_no_placement(spec))
    if placement is not None:
        if placement not in PLACEMENT_TYPES:
            raise ConfigError(f"unknown placement '{placement}'; expected one of {', '.join(PLACEMENT_TYPES)}")
        if placement not in supported:
            raise ConfigError(f"{spec.name} takes the placements {', '.join(supported)}, not {placement}")
        candidates = [placement]
    else:
        candidates = list(supported)
    chosen, sites = None, []
    for name in candidates:
        sites = PLACEMENT_TYPES[name].find(model)
        if sites:
            chosen = name
            break
    if chosen is None:
        looked = "; ".join(dict.fromkeys(PLACEMENT_TYPES[n].looked_for for n in candidates))
        raise ConfigError(f"found no place for {spec.name} in {where}: looked for {looked}")
    kind = PLACEMENT_TYPES[chosen]
    available = sorted({s.stage for s in sites})
    wanted = parse_stages(stages)
    if wanted is None:
        wanted = tuple(available) if kind.default_all_stages else tuple(available[:-1]) or tuple(available)
    missing = [s for s in wanted if s not in available]
    if missing:
        raise ConfigError(f"{where} has stages {', '.join(map(str, available))} for the {chosen} placement; "
                          f"--stages {', '.join(map(str, missing))} is not among them")
    sites = [s for s in sites if s.stage in wanted]
    shapes = probe_shapes(model, sites, tuple(parse_shape(shape)))
    parameter = next(model.parameters(), None)
    device, dtype = (parameter.device, parameter.dtype) if parameter is not None else ("cpu", None)
    names = []
    for site in sites:
        at = kind.block_shape(site, shapes, spec)
        try:
            block = build_module(spec, at, dict(overrides or {}))
        except ShapeError as exc:
            raise ShapeError(f"{spec.name} cannot go at {site.name} ({format_shape(at)}): "
                             f"{str(exc).split(': ', 1)[-1]}") from None
        block = kind.wrap(block, site, shapes, spec).to(device=device, dtype=dtype)
        names.append(kind.insert(model, site, block))
    return chosen, names, sorted({s.stage for s in sites})


@dataclass
class PlacedNetwork:
    """A network built for an input shape, with a block at every place (``blocks``: their qualified names)."""

    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    network: str
    block: str  # "none" for the plain network
    placement: str
    blocks: list[str]
    stages: list[int]


def create_network(network: NetworkSpec, spec=None, shape: Sequence[int] | str | None = None,
                   placement: str | None = None, stages: Sequence[int] | str | None = None,
                   overrides: Mapping[str, Any] | None = None, device: str = "cpu", dtype: Any = None,
                   seed: int = 0) -> PlacedNetwork:
    """``network`` built at ``shape`` (its card's input by default) with ``spec``'s block placed (None: plain)."""
    dims = check_input(network, parse_shape(shape) if shape is not None else parse_shape(network.input))
    torch.manual_seed(seed)  # the network's initial weights, as a seeded block's
    model = build_network(network, dims)
    chosen, names, used = "", [], []
    if spec is not None:
        asked, why = choose_placement(spec, network, placement)
        if asked is None:
            raise ConfigError(f"{spec.name} cannot go into {network.name}: {why}")
        chosen, names, used = attach_blocks(model, spec, asked, stages, dims, overrides, where=network.name)
    elif stages is not None or placement is not None:
        raise ConfigError("--stages and --placement need a block to place")
    generator = torch.Generator().manual_seed(seed)
    inputs = (torch.randn(dims, generator=generator),)
    model = model.to(device=device, dtype=dtype)
    inputs = tuple(x.to(device=device, dtype=dtype) for x in inputs)
    return PlacedNetwork(model, inputs, network.name, spec.name if spec is not None else "none", chosen, names,
                         used)




@dataclass(frozen=True)
class NetworkPlan:
    """A network to measure blocks in: its card, and where to place them (None: each block's default)."""

    network: NetworkSpec
    placement: str | None = None
    stages: tuple[int, ...] | None = None

    def create(self, spec, shape: Sequence[int], overrides: Mapping[str, Any] | None = None, device: str = "cpu",
               dtype: Any = None, seed: int = 0) -> PlacedNetwork:
        return create_network(self.network, spec, shape, self.placement if spec is not None else None,
                              self.stages if spec is not None else None, overrides, device, dtype, seed)


def available_stages(network: NetworkSpec, placement: str, shape: Sequence[int]) -> list[int]:
    """The stages of ``network`` (built at ``shape``) where ``placement`` finds places."""
    torch.manual_seed(0)
    model = build_network(network, shape)
    return sorted({site.stage for site in PLACEMENT_TYPES[placement].find(model)})


__all__ = ["NetworkPlan", "PlacedNetwork", "attach_blocks", "available_stages", "build_network", "check_input",
           "create_network", "parse_stages"]
