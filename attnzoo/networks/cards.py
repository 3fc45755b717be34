"""Network cards: one TOML file per backbone under ``registry/networks/``, read without importing torch.

A network card names a builder (``package.module:callable``) and the keywords it takes; a string keyword may
be an expression over the input's ``H`` and ``W`` (a ViT's ``image_size = "H"``), resolved at the input
shape. ``placements`` lists the placements (:mod:`attnzoo.networks.placements`) that find their places in
the network, the first being the network's default. User cards live in a ``networks/`` folder inside any
registry folder (``--registry DIR`` or ``ATTNZOO_REGISTRY``).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from attnzoo.errors import CardError, ConfigError, UnknownBlockError
from attnzoo.registry import PLACEMENTS

_REQUIRED = {"name": str, "title": str, "paper": str, "url": str, "builder": str}
_OPTIONAL = {"args": dict, "placements": list, "input": str, "params": int, "multiple": int, "square": bool,
             "notes": str}


@dataclass(frozen=True)
class NetworkSpec:
    """One validated network card."""

    name: str
    title: str
    paper: str
    url: str
    builder: str  # "torchvision.models:resnet50"
    args: dict[str, Any] = field(default_factory=dict)
    placements: tuple[str, ...] = ()
    input: str = "1,3,224,224"  # the input shape info's example uses
    params: int | None = None  # the builder's parameter count at the default input, as its docs state
    multiple: int = 1  # H and W must be multiples of this (a ViT's patch size)
    square: bool = False  # H must equal W (torchvision's VisionTransformer)
    notes: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "paper": self.paper, "url": self.url,
                "builder": self.builder, "args": dict(self.args), "placements": list(self.placements),
                "input": self.input, "params": self.params, "multiple": self.multiple, "square": self.square,
                "notes": self.notes, "source": self.source}


def _validate(data: dict[str, Any], path: Path) -> NetworkSpec:
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind) or not data[key].strip():
            raise CardError(f"{path}: field '{key}' must be a non-empty string")
    for key, kind in _OPTIONAL.items():
        if key in data and (not isinstance(data[key], kind) or (kind is not bool and isinstance(data[key], bool))):
            raise CardError(f"{path}: field '{key}' has the wrong type ({type(data[key]).__name__})")
    unknown = set(data) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise CardError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    if ":" not in data["builder"]:
        raise CardError(f"{path}: field 'builder' must look like 'package.module:callable'")
    placements = tuple(data.get("placements", ()))
    bad = [p for p in placements if p not in PLACEMENTS]
    if bad or not placements:
        raise CardError(f"{path}: field 'placements' must list some of {', '.join(PLACEMENTS)}"
                        + (f" (not {', '.join(map(str, bad))})" if bad else ""))
    name = data["name"]
    if name != name.strip().lower() or " " in name:
        raise CardError(f"{path}: field 'name' must be lower-case without spaces")
    return NetworkSpec(name=name, title=data["title"], paper=data["paper"], url=data["url"], builder=data["builder"],
                       args=dict(data.get("args", {})), placements=placements, input=data.get("input", "1,3,224,224"),
                       params=data.get("params"), multiple=max(1, data.get("multiple", 1)),
                       square=data.get("square", False), notes=data.get("notes", ""), source=str(path))


def network_dirs(extra: Iterable[str | os.PathLike] = ()) -> tuple[Path, ...]:
    """The ``networks/`` folder of every registry folder that has one (the bundled one always)."""
    from attnzoo.registry import NETWORK_FOLDER, registry_dirs

    folders = [d / NETWORK_FOLDER for d in registry_dirs(extra)]
    return tuple(f for i, f in enumerate(folders) if i == 0 or f.is_dir())


def _load_card(path: Path) -> NetworkSpec:
    try:
        with open(path, "rb") as handle:
            return _validate(tomllib.load(handle), path)
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{path}: not valid TOML ({exc})") from None


@lru_cache(maxsize=8)
def _load(dirs: tuple[Path, ...]) -> dict[str, NetworkSpec]:
    from attnzoo.registry import load_folders

    return load_folders(dirs, _load_card, "network")


def all_networks(extra_dirs: Iterable[str | os.PathLike] = ()) -> dict[str, NetworkSpec]:
    return _load(network_dirs(extra_dirs))


def list_networks(pattern: str = "*", extra_dirs: Iterable[str | os.PathLike] = ()) -> list[NetworkSpec]:
    return [s for n, s in sorted(all_networks(extra_dirs).items()) if fnmatch.fnmatchcase(n, pattern)]


@lru_cache(maxsize=64)
def timm_network(name: str) -> NetworkSpec:
    """The card of ``timm:NAME``, made from timm's registry (:mod:`attnzoo.networks.timm_cards`)."""
    from attnzoo.networks.timm_cards import timm_card

    return NetworkSpec(**timm_card(name))


def get_network(name: str, extra_dirs: Iterable[str | os.PathLike] = ()) -> NetworkSpec:
    """The network card called ``name``; an unknown name raises UnknownBlockError with the closest names.
    ``timm:NAME`` is timm's model NAME (:mod:`attnzoo.networks.timm_cards`)."""
    from attnzoo.registry import unknown

    if name.strip().lower().startswith("timm:"):
        return timm_network(name.strip())
    specs = all_networks(extra_dirs)
    if name in specs:
        return specs[name]
    raise unknown("network", name, specs, "attnzoo list --networks")


def resolve_networks(patterns: Iterable[str], extra_dirs: Iterable[str | os.PathLike] = ()) -> list[NetworkSpec]:
    """Names and wildcards to network cards, in order, without repeats."""
    from attnzoo.registry import expand

    def matching(pattern: str) -> list[NetworkSpec]:
        if pattern.strip().lower().startswith("timm:"):
            raise ConfigError(f"'{pattern}': name one timm model per --network (no wildcards over timm's models)")
        return list_networks(pattern, extra_dirs)

    return expand(patterns, matching, lambda n: get_network(n, extra_dirs), "network", "attnzoo list --networks")


def block_placements(spec) -> tuple[str, ...]:
    """The placements a block card supports, in order of preference: the card's ``placements`` field, else
    its family's. A block of two inputs, or whose output is not shaped like its input, has none."""
    if spec.inputs != 1:
        return ()
    if spec.placements:
        return tuple(spec.placements)
    if spec.output_shape:
        return ()
    if spec.layout == "BNC":
        return ("token-mixer",)
    if spec.family in ("channel", "spatial", "channel+spatial"):
        return ("residual", "mobilenet-v2", "stage", "token-mixer")
    return ("residual", "token-mixer")


def why_no_placement(spec) -> str:
    if spec.inputs != 1:
        return f"{spec.name} takes {spec.inputs} inputs; a network has one tensor at each place"
    return f"{spec.name} changes its output's shape ({spec.output_shape}); a placement needs the input's shape back"


def choose_placement(block, network: NetworkSpec, asked: str | None = None) -> tuple[str | None, str]:
    """The placement of ``block`` (a BlockSpec) in ``network``: ``asked`` if both support it, else the first
    of the block's that the network offers. Returns ``(placement, "")`` or ``(None, why not)``."""
    supported = block_placements(block)
    if not supported:
        return None, why_no_placement(block)
    if asked is not None:
        if asked not in PLACEMENTS:
            raise UnknownBlockError(f"unknown placement '{asked}'; expected one of {', '.join(PLACEMENTS)}")
        if asked not in network.placements:
            return None, f"{network.name} offers {', '.join(network.placements)}, not {asked}"
        if asked not in supported:
            return None, f"{block.name} takes the placements {', '.join(supported)}, not {asked}"
        return asked, ""
    for placement in supported:
        if placement in network.placements:
            return placement, ""
    return None, (f"{block.name} takes the placements {', '.join(supported)}; {network.name} offers "
                  f"{', '.join(network.placements)}")


__all__ = ["PLACEMENTS", "NetworkSpec", "all_networks", "block_placements", "choose_placement", "get_network",
           "list_networks", "network_dirs", "resolve_networks", "timm_network"]
