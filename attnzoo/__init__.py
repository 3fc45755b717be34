"""attnzoo: a zoo and profiler of computer-vision attention blocks.

Listing and looking up cards never imports torch; ``create``, ``profile`` and ``sweep`` do.
"""

from __future__ import annotations

from typing import Any, Sequence

from attnzoo.errors import AttnzooError, CardError, ConfigError, ShapeError, UnknownBlockError
from attnzoo.registry import BlockSpec, get_spec, list_blocks

__version__ = "0.1.0"
__all__ = ["AttnzooError", "BlockSpec", "CardError", "ConfigError", "ShapeError", "UnknownBlockError",
           "create", "get_spec", "list_blocks", "__version__"]


def create(name: str, shape: str | Sequence[int], *, registry: Sequence[str] = (), device: str = "cpu",
           dtype: Any = None, seed: int = 0, **overrides: Any):
    """Build block ``name`` for input ``shape``; returns ``(module, inputs)``, inputs a tuple of tensors.

    ``overrides`` replace the card's constructor arguments, e.g. ``create("cbam", (2, 64, 8, 8), reduction=8)``.
    """
    from attnzoo.build import create as _create

    return _create(get_spec(name, registry), shape, overrides, device=device, dtype=dtype, seed=seed)
