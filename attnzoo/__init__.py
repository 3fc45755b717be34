"""attnzoo: a zoo and profiler of computer-vision attention blocks.

Listing and looking up cards never imports torch; ``create`` and ``profile`` do.

There is no ``sweep`` function here (it would be hidden by the ``attnzoo.sweep`` module of the same name):
``attnzoo sweep`` is a command; from Python, profile a grid and fit it::

    from attnzoo.growth import fit_rows, grid_shapes, parse_values
    frame = attnzoo.profile("mha", grid_shapes((1, 64, 8, 8), "hw", parse_values("16,32,64")), mode="infer")
    fits = fit_rows(frame.to_dict("records"), "hw", ["macs", "fwd_ms"])
"""

from __future__ import annotations

from typing import Any, Sequence

from attnzoo._version import __version__
from attnzoo.campaign.units import register_runner
from attnzoo.errors import AttnzooError, CardError, ConfigError, ShapeError, UnknownBlockError
from attnzoo.networks.cards import NetworkSpec, get_network, list_networks
from attnzoo.registry import BlockSpec, get_spec, list_blocks

# The kinds of unit attnzoo measures, each with its runner ("module:function", imported only where a unit
# runs). The campaign runs any kind registered here and imports none of them: a new kind of measurement is
# a runner and one line here (docs/ARCHITECTURE.md).
register_runner("profile", "attnzoo.profiling.runner:run_unit", node_setup="attnzoo.profiling.runner:setup_node")
register_runner("train", "attnzoo.train.zoo:run_unit")
__all__ = ["AttnzooError", "BlockSpec", "CardError", "ConfigError", "NetworkSpec", "ShapeError", "UnknownBlockError",
           "attach", "create", "create_network", "get_network", "get_spec", "list_blocks", "list_networks", "profile",
           "__version__"]


def create(name: str, shape: str | Sequence[int], *, registry: Sequence[str] = (), device: str = "cpu",
           dtype: Any = None, seed: int = 0, **overrides: Any):
    """Build block ``name`` for input ``shape``; returns ``(module, inputs)``, inputs a tuple of tensors.

    ``overrides`` replace the card's constructor arguments, e.g. ``create("cbam", (2, 64, 8, 8), reduction=8)``.
    """
    from attnzoo.build import create as _create

    return _create(get_spec(name, registry), shape, overrides, device=device, dtype=dtype, seed=seed)


def profile(names: str | Sequence[str], shapes: str | Sequence[int] | Sequence[str | Sequence[int]], *,
            device: str = "auto", dtype: str = "float32", mode: str | None = None, min_time: float = 0.3,
            warmup: int = 3, threads: int | None = None, overrides: dict[str, Any] | None = None,
            registry: Sequence[str] = (), seed: int = 0, compile: bool = False, compile_mode: str | None = None,
            amp: bool = False, channels_last: bool = False, network: str | Sequence[str] | None = None,
            placement: str | None = None, stages: str | Sequence[int] | None = None, runtime: str = "eager",
            export_dir: str | None = None):
    """Profile blocks (names or wildcards) at shapes; returns a pandas DataFrame, one row per block and shape.

    Columns: ``attnzoo.columns.COLUMNS`` (params, macs, flops, bytes, fwd_ms, train_ms, fwd_peak_mib,
    the roofline's of_limit, ... and where and how each row was measured), declared there with their units
    and meaning. ``compile``, ``amp`` and ``channels_last`` are the modes of ``--compile``, ``--amp`` and
    ``--channels-last``. One multiply-add is 1 MAC and 2 FLOPs. A row that could not run has a ``status``
    other than ``"ok"`` saying why; unknown names and malformed shapes raise :class:`AttnzooError` before
    anything runs.

    With ``network`` (a name, wildcard or list: ``attnzoo.list_networks()``) the shapes are the network's
    input (B,3,H,W) and the rows are network rows: the plain network's (block ``none``), then one per block
    placed in it by ``placement`` in ``stages``, with the differences to the plain row (``added_params``,
    ``added_macs``, ``added_fwd_ms``, ``added_train_ms``) and the blocks' share (``attn_macs_share``,
    ``attn_time_share``); a block the network cannot hold gets a ``skipped: ...`` status. ``names`` may
    then be empty (the plain network alone).

    ``runtime`` (``--runtime``: torch.export, onnxruntime, openvino; the deploy extra) exports each block and
    runs its forward there, checked against eager float32 and timed; ``mode`` is then infer (else both).

    >>> attnzoo.profile("cbam", "2,64,32,32", mode="infer", min_time=0.2)  # doctest: +SKIP
    >>> attnzoo.profile("se", "1,3,224,224", network="resnet50", mode="infer")  # doctest: +SKIP
    """
    from attnzoo.api import profile_rows, to_frame
    from attnzoo.profiling.runner import ProfileOptions

    names = [names] if isinstance(names, str) else list(names)
    if isinstance(shapes, str) or (len(shapes) > 0 and all(isinstance(d, int) for d in shapes)):
        shapes = [shapes]
    mode = mode or ("both" if runtime == "eager" else "infer")
    options = ProfileOptions(device=device, dtype=dtype, mode=mode, min_time=min_time, warmup=warmup, seed=seed,
                             threads=threads, compile=compile, compile_mode=compile_mode, amp=amp,
                             channels_last=channels_last, runtime=runtime, export_dir=export_dir)
    in_networks = {}
    if network is not None:
        in_networks = {"networks": [network] if isinstance(network, str) else list(network),
                       "placement": placement, "stages": stages}
    elif placement is not None or stages is not None:
        raise ConfigError("placement and stages need a network")
    return to_frame(profile_rows(names, list(shapes), options, overrides, registry, **in_networks))


def create_network(network: str, block: str | None = None, shape: str | Sequence[int] | None = None, *,
                   placement: str | None = None, stages: str | Sequence[int] | None = None,
                   registry: Sequence[str] = (), device: str = "cpu", dtype: Any = None, seed: int = 0,
                   **overrides: Any):
    """Network ``network`` (``attnzoo.list_networks()``) built for input ``shape`` (B,3,H,W; its card's input
    by default) with block ``block`` at every place of ``placement`` (default: the block's first that the
    network offers) in ``stages`` (default: all; for "stage", all but the last). ``block`` None: the plain
    network. Returns the ``nn.Module``; ``overrides`` go to every block's constructor.

    >>> model = attnzoo.create_network("resnet50", "cbam")  # doctest: +SKIP
    """
    from attnzoo.networks.build import create_network as _create_network

    spec = get_spec(block, registry) if block is not None else None
    placed = _create_network(get_network(network, registry), spec, shape, placement, stages, overrides,
                             device=device, dtype=dtype, seed=seed)
    return placed.model


def attach(model, block: str, placement: str | None = None, stages: str | Sequence[int] | None = None, *,
           shape: str | Sequence[int] = (1, 3, 224, 224), registry: Sequence[str] = (), **overrides: Any):
    """Insert block ``block`` into ``model`` (in place) and return ``model``.

    The places are found by structure (torchvision's and timm's ResNets, MobileNetV2 and ViTs; see
    ``attnzoo.networks.placements``); ``placement`` None takes the first of the block's placements that
    ``model`` has. ``shape`` is the model's input, for the feature-map sizes the blocks are built at. A model
    without such places raises ConfigError saying what was looked for.

    >>> model = attnzoo.attach(timm.create_model("resnet50"), "se")  # doctest: +SKIP
    """
    from attnzoo.networks.build import attach_blocks

    attach_blocks(model, get_spec(block, registry), placement, stages, shape, overrides)
    return model
