"""Placements: named ways to put a block into a network, each finding its places by structure.

A placement looks at the modules of a model, not at their class names: a residual unit is a module with a
``downsample`` attribute and numbered ``convK`` / ``bnK`` children, held in an ``nn.Sequential`` stage (the
layout of torchvision's and timm's ResNets); an inverted residual is a sequence with a 1x1 expansion, a
depthwise 3x3 and a 1x1 projection (torchvision's MobileNetV2), or a module with ``conv_pw``, ``conv_dw``,
``se`` and ``conv_pwl`` (timm's); an encoder layer is a module holding an ``nn.MultiheadAttention`` (torchvision's
ViT) or an attention with ``qkv`` and ``proj`` linears (timm's). Each :class:`Site` names the module to wrap or
replace, its stage, and the module whose output shape the block is built at.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

from attnzoo.blocks.adapters import to_feature_map, to_tokens
from attnzoo.errors import ConfigError


@dataclass
class Site:
    name: str  # the module the block wraps or replaces (qualified name)
    stage: int  # 1-based: a ResNet's stage, a row of MobileNetV2's table, a ViT's encoder layer
    probe: str  # the module whose output (or input, with probe_input) the block takes
    probe_input: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(get_module(model, parent), attr, module)


def _numbered(module: nn.Module, prefix: str, kind) -> list[tuple[int, str, nn.Module]]:
    found = []
    for child_name, child in module.named_children():
        match = re.fullmatch(prefix + r"(\d+)", child_name)
        if match and isinstance(child, kind):
            found.append((int(match.group(1)), child_name, child))
    return sorted(found, key=lambda item: item[0])


def _norms(module: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """The numbered BatchNorms of a unit (a BatchNorm that a block was placed after counts too)."""
    return [item for item in _numbered(module, "bn", nn.Module)
            if isinstance(item[2], nn.modules.batchnorm._BatchNorm)
            or (isinstance(item[2], nn.Sequential) and isinstance(item[2][0], nn.modules.batchnorm._BatchNorm))]


def _is_residual_unit(module: nn.Module) -> bool:
    return (hasattr(module, "downsample") and len(_numbered(module, "conv", nn.Module)) >= 2
            and len(_norms(module)) >= 2)


def residual_stages(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """The stages of a ResNet: ``nn.Sequential`` modules whose children are all residual units, in order."""
    stages = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential) and len(module) and all(_is_residual_unit(c) for c in module):
            stages.append((name, [(f"{name}.{child}", unit) for child, unit in module.named_children()]))
    return stages


RESIDUAL_LOOKED_FOR = ("residual units (modules with a 'downsample' attribute and numbered convK / bnK children, "
                       "inside nn.Sequential stages, as torchvision's and timm's ResNets)")


class Placement:
    name = ""
    looked_for = ""
    default_all_stages = True

    def find(self, model: nn.Module) -> list[Site]:
        raise NotImplementedError

    def insert(self, model: nn.Module, site: Site, block: nn.Module) -> str:
        """Put ``block`` at ``site``; returns the block's qualified name."""
        raise NotImplementedError

    def block_shape(self, site: Site, shapes: dict[str, tuple[int, ...]], spec) -> tuple[int, ...]:
        return shapes[site.probe]

    def wrap(self, block: nn.Module, site: Site, shapes, spec) -> nn.Module:
        return block


class Residual(Placement):
    """After the residual branch's last BatchNorm, before the addition with the identity (SENet Fig. 3)."""

    name = "residual"
    looked_for = RESIDUAL_LOOKED_FOR

    def find(self, model):
        sites = []
        for stage, (_, units) in enumerate(residual_stages(model), 1):
            for unit_name, unit in units:
                _, bn_name, _ = _norms(unit)[-1]
                sites.append(Site(f"{unit_name}.{bn_name}", stage, f"{unit_name}.{bn_name}"))
        return sites

    def insert(self, model, site, block):
        set_module(model, site.name, nn.Sequential(get_module(model, site.name), block))
        return f"{site.name}.1"


class Stage(Placement):
    """On a stage's output, between stages (BAM: after stages 1, 2 and 3, not after the last)."""

    name = "stage"
    looked_for = RESIDUAL_LOOKED_FOR
    default_all_stages = False

    def find(self, model):
        return [Site(name, stage, name) for stage, (name, _) in enumerate(residual_stages(model), 1)]

    def insert(self, model, site, block):
        set_module(model, site.name, nn.Sequential(get_module(model, site.name), block))
        return f"{site.name}.1"


class ReplaceConv(Placement):
    """In place of a residual unit's 3x3 convolution whose input and output widths are equal (a bottleneck's
    conv2, a basic block's conv2). A stride of 2 is taken by a 3x3 average pool (padding 1) before the block,
    as ResNeSt's ``avd_first``: the block then computes at the output resolution, as SKNet's and EPSANet's
    strided convolutions do."""

    name = "replace-conv"
    looked_for = RESIDUAL_LOOKED_FOR + " with a 3x3 convolution of equal input and output width"

    def find(self, model):
        sites = []
        for stage, (_, units) in enumerate(residual_stages(model), 1):
            for unit_name, unit in units:
                convs = [(n, c) for _, n, c in _numbered(unit, "conv", nn.Conv2d)
                         if c.kernel_size == (3, 3) and c.in_channels == c.out_channels]
                if convs:
                    conv_name, conv = convs[-1]
                    sites.append(Site(f"{unit_name}.{conv_name}", stage, f"{unit_name}.{conv_name}",
                                      extra={"stride": conv.stride[0]}))
        return sites

    def insert(self, model, site, block):
        stride = site.extra["stride"]
        if stride == 1:
            set_module(model, site.name, block)
            return site.name
        set_module(model, site.name, nn.Sequential(nn.AvgPool2d(3, stride, padding=1), block))
        return f"{site.name}.1"


def _first_conv(module: nn.Module) -> nn.Conv2d | None:
    if isinstance(module, nn.Conv2d):
        return module
    for child in module.children():
        return child if isinstance(child, nn.Conv2d) else None
    return None


def _is_depthwise(conv: nn.Conv2d | None) -> bool:
    return (conv is not None and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
            and conv.kernel_size == (3, 3))


def _is_pointwise(conv: nn.Conv2d | None) -> bool:
    return conv is not None and conv.kernel_size == (1, 1) and conv.groups == 1


class MobileNetV2(Placement):
    """Coordinate attention's position in MobileNetV2 (its official mbv2_ca.py): after the depthwise 3x3 +
    BN + ReLU6, on the expanded width, before the 1x1 projection; not in blocks without an expansion (the
    first). Stages are the rows of MobileNetV2's Table 2: consecutive blocks of one output width."""

    name = "mobilenet-v2"
    looked_for = ("inverted residuals: a sequence of a 1x1 expansion, a depthwise 3x3 and a 1x1 projection "
                  "(torchvision's MobileNetV2), or modules with conv_pw, conv_dw, se and conv_pwl (timm's)")

    def find(self, model):
        units = []  # (output width, site or None when the unit has no expansion)
        for name, module in model.named_modules():
            if isinstance(module, nn.Sequential):
                convs = [_first_conv(element) for element in module]
                dw = next((i for i, c in enumerate(convs) if _is_depthwise(c)), None)
                if dw is None:
                    continue
                later = [c for c in convs[dw + 1:] if _is_pointwise(c)]
                if not later:
                    continue
                expanded = any(_is_pointwise(c) for c in convs[:dw])
                site = Site(name, 0, f"{name}.{dw}", extra={"index": dw}) if expanded else None
                units.append((later[0].out_channels, site))
            elif all(isinstance(getattr(module, a, None), nn.Module) for a in ("conv_dw", "conv_pwl", "se")):
                probe = f"{name}.bn2" if isinstance(getattr(module, "bn2", None), nn.Module) else f"{name}.conv_dw"
                site = Site(f"{name}.se", 0, probe, extra={"timm": True}) if hasattr(module, "conv_pw") else None
                units.append((module.conv_pwl.out_channels, site))
        sites, stage, width = [], 0, None
        for out_width, site in units:
            if out_width != width:
                stage, width = stage + 1, out_width
            if site is not None:
                site.stage = stage
                sites.append(site)
        return sites

    def insert(self, model, site, block):
        if site.extra.get("timm"):
            set_module(model, site.name, block)
            return site.name
        sequence = get_module(model, site.name)
        index = site.extra["index"]
        elements = list(sequence)
        set_module(model, site.name, nn.Sequential(*elements[:index + 1], block, *elements[index + 1:]))
        return f"{site.name}.{index + 1}"


class TokenMixer(nn.Module):
    """A block in place of a ViT layer's self-attention: takes the layer's (B, T, D) tokens, returns (B, T, D).

    ``grid=None``: the block takes every token, the class token included, as self-attention does. With a
    ``grid`` (h, w) (feature-map blocks, and token blocks built for a height and width): the patch tokens
    are laid out as the (B, D, h, w) grid, the block runs on it, and each of the ``class_tokens`` leading
    tokens receives the mean of the patch tokens' outputs (a global average, as a pooling mixer gives it).
    ``class_only``: the block returns one token (class attention): it updates the class token, and the patch
    tokens pass the layer's attention unchanged (a zero update), as in CaiT's class-attention layers.
    ``mha_call``: called as torchvision calls ``nn.MultiheadAttention`` (q, k, v, ...), returning (out, None).
    """

    def __init__(self, block: nn.Module, grid: tuple[int, int] | None = None, class_tokens: int = 0,
                 mha_call: bool = False, class_only: bool = False):
        super().__init__()
        self.block = block
        self.grid = grid
        self.class_tokens = class_tokens
        self.mha_call = mha_call
        self.class_only = class_only

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        if self.class_only:
            out = torch.cat([self.block(x), torch.zeros_like(x[:, 1:])], 1)  # (B, T, D)
        elif self.grid is None:
            out = self.block(x)  # (B, T, D)
        else:
            h, w = self.grid
            k = self.class_tokens
            mixed = to_tokens(self.block(to_feature_map(x[:, k:], h, w)))  # (B, h*w, D)
            if k:
                mixed = torch.cat([mixed.mean(1, keepdim=True).expand(-1, k, -1), mixed], 1)  # (B, T, D)
            out = mixed
        return (out, None) if self.mha_call else out


def _uses_grid(spec) -> bool:
    """Whether a block is built for a 2-D layout: a feature-map block, or a token block whose arguments use
    H, W or N (a window, a height and width, a fixed sequence length)."""
    if spec.layout == "BCHW":
        return True
    if spec.output_shape:  # a class token out: the block takes every token
        return False
    return any(isinstance(v, str) and re.search(r"\b[HWN]\b", v) for v in spec.args.values())


class TokenMixerPlacement(Placement):
    """In place of self-attention in every encoder layer (MetaFormer's token mixer)."""

    name = "token-mixer"
    looked_for = ("ViT encoder layers: modules holding an nn.MultiheadAttention (torchvision's ViT) or an "
                  "attention with qkv and proj linears (timm's), and a patch embedding (a convolution whose stride "
                  "is its kernel)")

    def find(self, model):
        sites = []
        patch = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1
                      and tuple(m.stride) == tuple(m.kernel_size)), None)
        for name, module in model.named_modules():
            for child_name, child in module.named_children():
                full = f"{name}.{child_name}" if name else child_name
                if isinstance(child, nn.MultiheadAttention):
                    sites.append(Site(full, len(sites) + 1, full, probe_input=True, extra={"mha": True, "patch": patch}))
                elif isinstance(getattr(child, "qkv", None), nn.Linear) and isinstance(getattr(child, "proj", None),
                                                                                      nn.Linear):
                    sites.append(Site(full, len(sites) + 1, full, probe_input=True, extra={"mha": False, "patch": patch}))
        if sites and patch is None:
            return []
        return sites

    def _layout(self, site, shapes, spec):
        b, t, d = shapes[site.probe]
        _, _, h, w = shapes[site.extra["patch"]]
        class_tokens = t - h * w
        if class_tokens < 0:
            raise ConfigError(f"{site.name}: {t} tokens but a {h}x{w} patch grid; cannot lay the tokens out")
        return b, t, d, h, w, class_tokens

    def block_shape(self, site, shapes, spec):
        b, t, d, h, w, _ = self._layout(site, shapes, spec)
        return (b, d, h, w) if _uses_grid(spec) else (b, t, d)

    def wrap(self, block, site, shapes, spec):
        _, _, _, h, w, class_tokens = self._layout(site, shapes, spec)
        grid = (h, w) if _uses_grid(spec) else None
        if spec.output_shape and not class_tokens:
            raise ConfigError(f"{spec.name} returns a class token, and the network's tokens have none")
        return TokenMixer(block, grid, class_tokens, mha_call=site.extra["mha"], class_only=bool(spec.output_shape))

    def insert(self, model, site, block):
        set_module(model, site.name, block)
        return f"{site.name}.block"


PLACEMENT_TYPES: dict[str, Placement] = {p.name: p for p in (Residual(), Stage(), ReplaceConv(), MobileNetV2(),
                                                             TokenMixerPlacement())}


def probe_shapes(model: nn.Module, sites: Sequence[Site], example: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The shape at every site's probe (and patch embedding) for an input of shape ``example``: one forward
    of a copy of the model on the meta device (no memory, no arithmetic), or of the model itself when a
    module cannot run on meta."""
    wanted: dict[str, bool] = {}
    for site in sites:
        wanted[site.probe] = site.probe_input
        if site.extra.get("patch"):
            wanted[site.extra["patch"]] = False
    found: dict[str, tuple[int, ...]] = {}

    def run(net: nn.Module, x: torch.Tensor) -> None:
        handles = []
        for name, use_input in wanted.items():
            module = get_module(net, name)
            if use_input:
                handles.append(module.register_forward_pre_hook(
                    lambda m, args, kwargs, name=name: found.__setitem__(name, tuple(args[0].shape)), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(
                    lambda m, args, out, name=name: found.__setitem__(name, tuple(out.shape))))
        was_training = net.training
        try:
            net.eval()
            with torch.no_grad():
                net(x)
        finally:
            net.train(was_training)
            for handle in handles:
                handle.remove()

    # A copy whose tensors are meta from the start: copying the real weights first would cost a clone each.
    memo: dict[int, Any] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    try:
        run(copy.deepcopy(model, memo), torch.empty(example, device="meta"))
    except Exception:  # noqa: BLE001  (an operator without a meta kernel: measure the real thing once)
        found.clear()
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        run(model, torch.zeros((1, *example[1:]), device=device))
        found.update({k: (example[0], *v[1:]) for k, v in found.items()})
    return found


__all__ = ["PLACEMENT_TYPES", "Placement", "Site", "TokenMixer", "get_module", "probe_shapes", "residual_stages",
           "set_module"]
