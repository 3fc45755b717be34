"""Registry cards: one TOML file per block, loaded and validated without importing torch.

A card is data only. Its ``target`` names the constructor (``package.module:Class``); its ``[args]`` table
gives constructor keywords, where a string may be an arithmetic expression over the input shape's symbols
(``"C"``, ``"H*W"``, ``"C//2"``), resolved by :mod:`attnzoo.build`.

Cards are searched in the bundled folder first, then in the folders of ``ATTNZOO_REGISTRY`` (separated by
``os.pathsep``), then in folders passed explicitly (``--registry DIR``).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from attnzoo.errors import CardError, ConfigError, UnknownBlockError

FAMILIES = ("channel", "spatial", "channel+spatial", "self-attention", "local", "axial", "linear", "external", "fusion",
            "conv")
LAYOUTS = ("BCHW", "BNC")

#: Every placement attnzoo knows, with the paper whose position it follows: the names a card's
#: ``placements`` may list (attnzoo.networks finds the places by structure: networks/placements.py).
PLACEMENTS: dict[str, str] = {
    "residual": "after the residual branch's last BatchNorm, before the addition (SENet Fig. 3, CBAM, ECA, "
                "SGE, SA-Net, triplet, SimAM, GCNet; timm's attn_layer)",
    "stage": "after a stage of residual units, on its output (BAM: after stages 1, 2 and 3)",
    "replace-conv": "in place of the residual unit's 3x3 convolution, a 3x3 average pool taking its stride "
                    "(SKNet, ResNeSt, EPSANet, CoTNet)",
    "mobilenet-v2": "in each inverted residual with an expansion, after the depthwise 3x3 + BN + ReLU6, before "
                    "the 1x1 projection (coordinate attention's mbv2_ca.py)",
    "token-mixer": "in place of self-attention in every encoder layer of a ViT (MetaFormer, PoolFormer)",
}

ENV_VAR = "ATTNZOO_REGISTRY"
#: A registry folder holds block cards and, in this subfolder, network cards (attnzoo.networks).
NETWORK_FOLDER = "networks"

_REQUIRED = {"name": str, "title": str, "paper": str, "url": str, "family": str, "layout": str, "target": str,
             "complexity": str}
_OPTIONAL = {"inputs": int, "input_shapes": list, "output_shape": str, "args": dict, "macs_exponent": (int, float),
             "notes": str, "repeat_input": int, "forward_args": dict, "macs": str, "placements": list}


@dataclass(frozen=True)
class BlockSpec:
    """One validated card."""

    name: str
    title: str
    paper: str
    url: str
    family: str
    layout: str
    target: str
    complexity: str
    inputs: int = 1
    # One shape expression per input ("B,C,H//2,W//2"); empty means every input takes the given shape.
    input_shapes: tuple[str, ...] = ()
    # The output's shape expression when it is not the first input's ("B,1,C" for a class token).
    output_shape: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    # For third-party modules: pass the one input this many times (q = k = v for torch.nn.MultiheadAttention)
    # and these keywords to forward (need_weights = false).
    repeat_input: int = 1
    forward_args: dict[str, Any] = field(default_factory=dict)
    # Expected growth of MACs with the number of positions N at fixed B and C (MACs ~ N^k); checked by tests.
    macs_exponent: float | None = None
    # MACs of one forward as an expression over B, C, H, W, N and the constructor arguments
    # ("B*2*channels*(channels//reduction)"); checked against the counter by the tests.
    macs: str = ""
    # Where the block goes in a network (PLACEMENTS), in order of preference; empty:
    # its family's placements (attnzoo.networks.cards.block_placements).
    placements: tuple[str, ...] = ()
    notes: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "family": self.family, "layout": self.layout,
                "inputs": self.inputs, "complexity": self.complexity, "paper": self.paper, "url": self.url,
                "target": self.target, "args": dict(self.args), "repeat_input": self.repeat_input,
                "forward_args": dict(self.forward_args), "input_shapes": list(self.input_shapes),
                "output_shape": self.output_shape,
                "macs_exponent": self.macs_exponent, "macs": self.macs, "placements": list(self.placements),
                "notes": self.notes, "source": self.source}


def bundled_registry_dir() -> Path:
    """The cards shipped with attnzoo: inside the wheel, or the repository's registry/ in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / "registry"
    return packaged if packaged.is_dir() else here.parent / "registry"


def _validate(data: dict[str, Any], path: Path) -> BlockSpec:
    where = f"{path}"
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise CardError(f"{where}: missing field '{key}'")
        if not isinstance(data[key], kind) or not data[key].strip():
            raise CardError(f"{where}: field '{key}' must be a non-empty string")
    for key, kind in _OPTIONAL.items():
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise CardError(f"{where}: field '{key}' has the wrong type ({type(data[key]).__name__})")
    unknown = set(data) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise CardError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if data["family"] not in FAMILIES:
        raise CardError(f"{where}: field 'family' is '{data['family']}', expected one of {', '.join(FAMILIES)}")
    if data["layout"] not in LAYOUTS:
        raise CardError(f"{where}: field 'layout' is '{data['layout']}', expected one of {', '.join(LAYOUTS)}")
    if ":" not in data["target"]:
        raise CardError(f"{where}: field 'target' must look like 'package.module:Class'")
    inputs = data.get("inputs", 1)
    if inputs < 1:
        raise CardError(f"{where}: field 'inputs' must be at least 1")
    repeat_input = data.get("repeat_input", 1)
    if repeat_input < 1 or (repeat_input > 1 and inputs != 1):
        raise CardError(f"{where}: field 'repeat_input' must be at least 1, and needs inputs = 1")
    input_shapes = tuple(data.get("input_shapes", ()))
    if input_shapes and (len(input_shapes) != inputs or not all(isinstance(s, str) for s in input_shapes)):
        raise CardError(f"{where}: field 'input_shapes' must list one shape string per input ({inputs})")
    placements = tuple(data.get("placements", ()))
    if any(p not in PLACEMENTS for p in placements):
        raise CardError(f"{where}: field 'placements' must list some of {', '.join(PLACEMENTS)}")
    name = data["name"]
    if name != name.strip().lower() or " " in name:
        raise CardError(f"{where}: field 'name' must be lower-case without spaces")
    return BlockSpec(name=name, title=data["title"], paper=data["paper"], url=data["url"], family=data["family"],
                     layout=data["layout"], target=data["target"], complexity=data["complexity"], inputs=inputs,
                     input_shapes=input_shapes, output_shape=data.get("output_shape", ""), args=dict(data.get("args", {})),
                     repeat_input=repeat_input, forward_args=dict(data.get("forward_args", {})),
                     macs_exponent=data.get("macs_exponent"), macs=data.get("macs", ""), placements=placements, notes=data.get("notes", ""), source=str(path))


def load_card(path: Path) -> BlockSpec:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{path}: not valid TOML ({exc})") from None
    return _validate(data, path)


def registry_dirs(extra: Iterable[str | os.PathLike] = ()) -> tuple[Path, ...]:
    dirs = [bundled_registry_dir()]
    dirs += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    return tuple(dirs)


def load_folders(dirs: Iterable[Path], load, kind: str = "block") -> dict[str, Any]:
    """Every card of the folders, by name, read by ``load(path)`` (cards of blocks or of networks); a name
    used twice is a CardError naming both files."""
    specs: dict[str, Any] = {}
    for folder in dirs:
        if not folder.is_dir():
            raise CardError(f"{folder}: registry folder not found")
        for path in sorted(folder.glob("*.toml")):
            spec = load(path)
            if spec.name in specs:
                raise CardError(f"{path}: duplicate {kind} name '{spec.name}' (also in {specs[spec.name].source})")
            specs[spec.name] = spec
    return specs


@lru_cache(maxsize=8)
def _load_dirs(dirs: tuple[Path, ...]) -> dict[str, BlockSpec]:
    return load_folders(dirs, load_card)


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names a person would suggest for ``name``: the same name in another case, then the names it
    begins (``swin`` -> ``swin-window-attention``) or is a part of, then the nearest spellings."""
    known = list(known)
    lower = name.strip().lower()
    same = [k for k in known if k.lower() == lower]
    if same or not lower:
        return same[:n]
    starts = [k for k in known if k.lower().startswith(lower)]
    parts = [k for k in known if k not in starts and lower in k.lower().split("-")]
    found = (starts + parts)[:n]
    if found:
        return found
    return difflib.get_close_matches(lower, known, n=n, cutoff=0.5)


def unknown(kind: str, name: str, known: Iterable[str], listing: str) -> UnknownBlockError:
    """The error for an unknown name, with the closest known names ("did you mean")."""
    close = closest(name, known)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else f"; see '{listing}'"
    return UnknownBlockError(f"unknown {kind} '{name}'{hint}")


def expand(patterns: Iterable[str], matching, lookup, kind: str, listing: str) -> list[Any]:
    """Names and wildcards to cards, in order, without repeats: ``matching(pattern)`` lists the cards a
    wildcard matches, ``lookup(name)`` finds one (raising for an unknown name)."""
    found: list[Any] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = matching(pattern)
            if not matched:
                raise UnknownBlockError(f"no {kind} matches '{pattern}'; see '{listing}'")
        else:
            matched = [lookup(pattern)]
        found += [m for m in matched if m not in found]
    return found


def network_names(extra_dirs: Iterable[str | os.PathLike] = ()) -> list[str]:
    """The names of the network cards beside the block cards (each registry folder's ``networks/``), read
    from the files without validating them (attnzoo.networks loads and checks them): so that a block name
    that is a network's can say so."""
    names = []
    for folder in registry_dirs(extra_dirs):
        for path in sorted((folder / NETWORK_FOLDER).glob("*.toml")):
            try:
                with open(path, "rb") as handle:
                    name = tomllib.load(handle).get("name")
            except (OSError, tomllib.TOMLDecodeError):
                continue
            if isinstance(name, str):
                names.append(name)
    return names


def all_specs(extra_dirs: Iterable[str | os.PathLike] = ()) -> dict[str, BlockSpec]:
    """Every card, by name, from the bundled folder, ATTNZOO_REGISTRY and ``extra_dirs``."""
    return _load_dirs(registry_dirs(extra_dirs))


def get_spec(name: str, extra_dirs: Iterable[str | os.PathLike] = ()) -> BlockSpec:
    """The card called ``name``; an unknown name raises UnknownBlockError with the closest names."""
    specs = all_specs(extra_dirs)
    if name in specs:
        return specs[name]
    if name in FAMILIES:
        members = [n for n, spec in sorted(specs.items()) if spec.family == name]
        raise UnknownBlockError(f"'{name}' is a family of {len(members)} blocks, not a block: "
                                f"{', '.join(members)} (attnzoo list --family {name})")
    network = next((n for n in network_names(extra_dirs) if n.lower() == name.strip().lower()), None)
    if network is not None:
        raise UnknownBlockError(f"{name} is a network, not a block: --network {network} places blocks in it "
                                f"(attnzoo profile cbam --network {network}; attnzoo info {network})")
    raise unknown("block", name, specs, "attnzoo list")


def list_blocks(pattern: str = "*", family: str | None = None, layout: str | None = None,
                extra_dirs: Iterable[str | os.PathLike] = ()) -> list[BlockSpec]:
    """Cards whose name matches the shell-style ``pattern``, optionally filtered by family and layout."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown family '{family}'; expected one of {', '.join(FAMILIES)}")
    if layout is not None and layout.upper() not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}'; expected one of {', '.join(LAYOUTS)}")
    return [spec for name, spec in sorted(all_specs(extra_dirs).items())
            if fnmatch.fnmatchcase(name, pattern)
            and (family is None or spec.family == family)
            and (layout is None or spec.layout == layout.upper())]


def resolve_names(patterns: Iterable[str], extra_dirs: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Expand names, wildcards and families (``channel``: every block of that family) to card names, in order
    and without repeats; unknown names raise."""
    def matching(pattern: str) -> list[str]:
        return [spec.name for spec in list_blocks(pattern, extra_dirs=extra_dirs)]

    def lookup(name: str) -> str:
        if name in FAMILIES and name not in all_specs(extra_dirs):
            return name
        return get_spec(name, extra_dirs).name

    found = expand(patterns, matching, lookup, "block", "attnzoo list")
    names: list[str] = []
    for name in found:
        members = ([spec.name for spec in list_blocks(family=name, extra_dirs=extra_dirs)]
                   if name in FAMILIES and name not in all_specs(extra_dirs) else [name])
        names += [member for member in members if member not in names]
    return names
