"""timm models as network cards: ``--network timm:NAME`` builds any model of timm by name, without weights.

``NAME`` is a timm architecture (``seresnet33ts``) or an architecture with its pretrained tag
(``seresnet33ts.ra2_in1k``): the tag picks timm's configuration for those weights (its image size, which
becomes the card's default input), never the weights themselves. The card is made here from timm's own
registry instead of a TOML file, and is a network like the others: a row of params, MACs, time and memory,
with blocks placed where :mod:`attnzoo.networks.placements` finds places in it (found by structure on the
meta device, so no memory is spent to know them).

timm is an optional extra (``pip install 'attnzoo[timm]'``); without it a ``timm:`` name is one line that
says so. An unknown name is one line with the closest names of ``timm.list_models()``.
"""

from __future__ import annotations

import difflib

from typing import Any

from attnzoo.errors import ConfigError, UnknownBlockError
from attnzoo.registry import PLACEMENTS

PREFIX = "timm:"
EXTRA = "pip install 'attnzoo[timm]'"


def is_timm_name(name: str) -> bool:
    return name.strip().lower().startswith(PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError(f"timm models need timm, which is not installed: {EXTRA}") from None
    return timm


def _closest(name: str, known: list[str], n: int = 3) -> str:
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    if not close:
        return "; see timm.list_models()"
    return "; did you mean " + " or ".join(repr(PREFIX + c) for c in close) + "?"


def check_name(model: str) -> tuple[str, str]:
    """``(architecture, tag)`` of a timm model name, or UnknownBlockError naming the closest names."""
    timm = _timm()
    arch, _, tag = model.partition(".")
    known = timm.list_models()
    if not arch or arch not in known:
        raise UnknownBlockError(f"unknown timm model '{arch or model}'{_closest(arch or model, known)}")
    if tag:
        tagged = timm.list_pretrained(f"{arch}.*")
        if model not in tagged:
            tags = ", ".join(t.partition(".")[2] for t in tagged) or "none"
            raise UnknownBlockError(f"timm's {arch} has no pretrained tag '{tag}' (its tags: {tags})")
    return arch, tag


def _input_size(timm, model: str) -> tuple[int, int]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    size = tuple(getattr(cfg, "input_size", None) or (3, 224, 224))
    return int(size[1]), int(size[2])


def create_model(model_name: str, image_size: int | None = None):
    """timm's ``model_name`` without weights; a model built for a fixed image size (a ViT) is built at
    ``image_size`` when that differs from its default. Called by :func:`attnzoo.networks.build.build_network`
    with the card's arguments."""
    timm = _timm()
    model = timm.create_model(model_name, pretrained=False)
    default = getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224))
    if image_size is not None and image_size != default[-1]:
        try:
            model = timm.create_model(model_name, pretrained=False, img_size=image_size)
        except TypeError:  # a model that takes any image size (a convolutional network) has no img_size
            pass
    return model


def _placements(model_name: str) -> tuple[str, ...]:
    """The placements that find places in the model, found by structure on the meta device (no memory)."""
    import torch

    from attnzoo.networks.placements import PLACEMENT_TYPES

    timm = _timm()
    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False)
    found = tuple(name for name in PLACEMENTS if PLACEMENT_TYPES[name].find(model))
    return found or tuple(PLACEMENTS)  # no place: a block asked for says what was looked for


def timm_card(name: str) -> dict[str, Any]:
    """The fields of ``timm:NAME``'s network card (:func:`attnzoo.networks.cards.get_network` makes the card):
    UnknownBlockError for a name timm does not know, ConfigError when timm is not installed."""
    model = name.strip()[len(PREFIX):].strip()
    if not model:
        raise UnknownBlockError(f"'{name}' names no timm model: --network timm:NAME (a name of timm.list_models())")
    timm = _timm()
    check_name(model)
    height, width = _input_size(timm, model)
    return dict(
        name=PREFIX + model, title=f"{model} (timm {timm.__version__}, built without weights)",
        paper="Wightman, PyTorch Image Models (timm)", url=f"https://huggingface.co/timm/{model}",
        builder="attnzoo.networks.timm_cards:create_model", args={"model_name": model, "image_size": "H"},
        placements=_placements(model), input=f"1,3,{height},{width}",
        notes=f"timm.create_model('{model}', pretrained=False); the tag, if any, picks timm's configuration "
              "(its image size), not weights", source="timm")


__all__ = ["EXTRA", "PREFIX", "check_name", "create_model", "is_timm_name", "timm_card"]
