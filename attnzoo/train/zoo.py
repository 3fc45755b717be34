"""Comparisons of many blocks and seeds on the white-patch task: what a block buys, beside what it costs.

A comparison is a list of campaign units (attnzoo.campaign: kind "train", one per block and seed, its
settings those of :class:`Protocol` plus the seed), each trained by :func:`run_unit` into one row that the
campaign's row file keeps as it arrives: an interrupted comparison keeps its finished runs, ``--resume``
trains only the rest, ``--shard I/N`` trains one part and a Ray executor can run them elsewhere. A unit
loads its images once per process (:func:`task_data`, cached).

A row holds the run's curves (``test_loss_curve``, ``train_loss_curve``: one figure per epoch) and its
derived figures. The block's cost at the training shape (MACs, forward time) is not measured here: the
command plans profile units beside the train units (the profiler's runner, one path) and joins their rows
by block (:func:`attnzoo.train_results.join_costs`); :func:`attnzoo.train_results.summarise` turns the rows
into one line per block over its seeds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from attnzoo.errors import AttnzooError, ConfigError, ShapeError, UnknownBlockError
from attnzoo.train_results import curve_text, derived

#: Settings every row of a comparison shares; a resume with others is refused.
PROTOCOL_KEYS = ("epochs", "batch_size", "lr", "train_size", "test_size", "dataset", "difficulty", "data_seed",
                 "target_loss", "last_epochs", "compile", "amp", "channels_last")
#: What a unit carries besides PROTOCOL_KEYS and its seed: where its images are, and its device. Where its
#: run folder goes is not part of the unit (two shards writing to two folders run the same units): the
#: executor's RunContext.out says (the comparison's --out), else DEFAULT_OUT.
UNIT_KEYS = ("data_root", "device", "threads")
DEFAULT_OUT = Path("runs") / "train" / "compare"


@dataclass(frozen=True)
class TrainRun:
    """One unit of a comparison: ``block`` trained from ``seed`` (weights and batch order)."""

    block: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return self.block, self.seed

    @property
    def folder(self) -> str:
        return f"{self.block}/seed-{self.seed}"


@dataclass
class Protocol:
    """What every run of a comparison shares: the training settings and how a row's figures are derived."""

    out: Path
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    train_size: int = 4000
    test_size: int = 1000
    dataset: str = "synthetic"
    difficulty: str = "article"
    data_seed: int = 0  # the images and patches: the same for every run
    data_root: str | None = None
    device: str = "cpu"
    target_loss: float = 0.1  # epochs_to_target: the first epoch whose test loss is at most this
    last_epochs: int | None = None  # last_test_loss: the mean over this many final epochs (default: a fifth)
    registry: tuple[str, ...] = ()
    compile: bool = False
    amp: bool = False
    channels_last: bool = False
    threads: int | None = None  # CPU threads (torch.set_num_threads) while training and measuring the cost

    def check(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if not 0 < self.target_loss < 1:
            raise ConfigError(f"--target-loss must be between 0 and 1 (a binary cross-entropy), got {self.target_loss}")
        if self.last_epochs is not None and not 1 <= self.last_epochs <= self.epochs:
            raise ConfigError(f"--last-epochs must be between 1 and --epochs ({self.epochs}), got {self.last_epochs}")

    @property
    def last(self) -> int:
        return self.last_epochs or max(1, round(self.epochs / 5))

    def record(self) -> dict[str, Any]:
        """The settings a resume must share (see PROTOCOL_KEYS), as JSON values."""
        values = dataclasses.asdict(self)
        values["last_epochs"] = self.last
        return {key: values[key] for key in PROTOCOL_KEYS}


# ------------------------------------------------------------------------------------------- which blocks


def fits_task(name: str, overrides: dict[str, Any] | None = None, registry: Sequence[str] = (),
              batch: int = 2) -> str | None:
    """None when block ``name`` can take the article's place at (B, 32, 24, 24); else why not, in a line."""
    from attnzoo.registry import get_spec
    from attnzoo.train.models import NO_BLOCK, build_block

    if name == NO_BLOCK:
        return None
    spec = get_spec(name, registry)
    if spec.inputs != 1:
        return f"fuses {spec.inputs} inputs"
    try:
        build_block(name, overrides, registry, batch)
    except (ShapeError, ConfigError) as exc:
        return str(exc).removeprefix(f"{name} ")
    except Exception as exc:  # noqa: BLE001  (a constructor that rejects the shape its own way)
        return f"cannot be built at (B, 32, 24, 24): {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    return None


def select_blocks(patterns: Iterable[str], every: bool = False, registry: Sequence[str] = (),
                  overrides: dict[str, dict[str, Any]] | None = None, batch: int = 2) -> tuple[list[str], dict[str, str]]:
    """The blocks of a comparison and those left out, with why: ``(names, {name: reason})``.

    ``patterns``: block names, wildcards (``*-attention``) and family names (``channel``); ``cnn`` is the
    plain network. With ``every``, every one-input card of the registry (and ``cnn``) filtered by
    ``patterns`` when some are given. A name given explicitly must fit the task (else an error); blocks
    reached through a wildcard, a family or ``every`` that do not fit are left out and listed.
    """
    overrides = overrides or {}
    patterns = list(patterns)
    names: list[str] = []
    skipped: dict[str, str] = {}
    for name, explicit in _candidates(patterns, every, registry):
        why = fits_task(name, overrides.get(name), registry, batch)
        if why is None:
            names.append(name)
        elif explicit:
            raise ShapeError(f"{name} {why}") if "inputs" not in why else ConfigError(
                f"{name} {why}; the white-patch task needs a one-input block")
        else:
            skipped[name] = why
    if not names:
        shown = ", ".join(p.strip() for p in patterns if p.strip()) or "--all"
        raise ConfigError(f"no block of {shown} fits the task at (B, 32, 24, 24)")
    return names, skipped


def expand_names(patterns: Iterable[str], every: bool = False, registry: Sequence[str] = ()) -> list[str]:
    """The names ``patterns`` (and ``every``) reach, before any is built (see :func:`select_blocks`)."""
    return [name for name, _ in _candidates(patterns, every, registry)]


def _candidates(patterns: Iterable[str], every: bool, registry: Sequence[str]) -> list[tuple[str, bool]]:
    """``(name, named explicitly)`` for every block the patterns reach, in order, each once."""
    from fnmatch import fnmatchcase

    from attnzoo.registry import FAMILIES, all_specs, get_spec
    from attnzoo.train.models import NO_BLOCK

    specs = all_specs(registry)
    patterns = [p.strip() for p in patterns if p.strip()]
    candidates: list[tuple[str, bool]] = []  # (name, named explicitly)

    def matches(name: str, pattern: str) -> bool:
        family = specs[name].family if name in specs else None
        return pattern == family or fnmatchcase(name, pattern) or name == pattern

    if every:
        universe = [NO_BLOCK, *sorted(specs)]
        for name in universe:
            if not patterns or any(matches(name, p) for p in patterns):
                candidates.append((name, False))
        if not candidates:
            raise ConfigError(f"--all with {', '.join(patterns)}: no block matches; see 'attnzoo list'")
    for pattern in patterns if not every else ():
        if pattern == NO_BLOCK:
            found = [(NO_BLOCK, True)]
        elif pattern in FAMILIES:
            found = [(name, False) for name in sorted(specs) if specs[name].family == pattern]
        elif any(ch in pattern for ch in "*?["):
            found = [(name, False) for name in sorted(specs) if fnmatchcase(name, pattern)]
            if fnmatchcase(NO_BLOCK, pattern):
                found.insert(0, (NO_BLOCK, False))
            if not found:
                raise UnknownBlockError(f"no block matches '{pattern}'; see 'attnzoo list'")
        else:
            found = [(get_spec(pattern, registry).name, True)]
        candidates += [c for c in found if c[0] not in {n for n, _ in candidates}]
    return candidates


# ------------------------------------------------------------------------------------------- one run


def run_one(run: TrainRun, protocol: Protocol, data, info=None, resume: bool = False,
            say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Train one run into its folder and return its row. A block that fails while training (an error of
    its own, not of the user's settings) gives a row whose status says so."""
    import shutil

    import torch

    from attnzoo.registry import get_spec
    from attnzoo.train.loop import TrainConfig, checkpoint_dir, train
    from attnzoo.train.models import NO_BLOCK, build_model

    out = Path(protocol.out) / run.folder
    cfg = TrainConfig(block=run.block, out=out, overrides=run.overrides, epochs=protocol.epochs,
                      batch_size=protocol.batch_size, lr=protocol.lr, seed=run.seed, train_size=protocol.train_size,
                      test_size=protocol.test_size, dataset=protocol.dataset, difficulty=protocol.difficulty,
                      resume=resume, registry=tuple(protocol.registry), compile=protocol.compile, amp=protocol.amp,
                      channels_last=protocol.channels_last, keep_checkpoints=False, figures="last")
    if not resume and checkpoint_dir(out).is_dir():
        shutil.rmtree(checkpoint_dir(out))  # a fresh run: no checkpoint of an older one may be resumed later
    family = "none" if run.block == NO_BLOCK else get_spec(run.block, protocol.registry).family
    row: dict[str, Any] = {
        "block": run.block, "family": family, "seed": run.seed, "status": "ok",
        "shape": f"{protocol.batch_size},32,24,24", "dataset": protocol.dataset,
        "difficulty": protocol.difficulty if protocol.dataset == "synthetic" else "",
        "train_size": protocol.train_size, "test_size": protocol.test_size, "batch_size": protocol.batch_size,
        "lr": protocol.lr, "target_loss": protocol.target_loss, "last_epochs": protocol.last,
        "overrides": " ".join(f"{k}={v}" for k, v in sorted(run.overrides.items())),
        "device": str(info.device) if info is not None else protocol.device, "torch": torch.__version__,
    }
    try:
        model = build_model(run.block, run.overrides, protocol.registry, run.seed, protocol.batch_size)
        summary = train(cfg, data, info, say, model=model)
    except AttnzooError:
        raise
    except (RuntimeError, ValueError, FloatingPointError) as exc:
        row["status"] = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        row["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return row
    history = summary.pop("history")
    test_loss = [h["test_loss"] for h in history]
    row.update({"params": summary["params"], "block_params": summary["block_params"], "epochs": len(history),
                "min_train_loss": summary["min_train_loss"], "best_test_acc": summary["best_test_acc"],
                **derived(test_loss, protocol.target_loss, protocol.last),
                "wall_s": summary["wall_s"], "img_per_s": summary["img_per_s"],
                "test_loss_curve": curve_text(test_loss),
                "train_loss_curve": curve_text(h["train_loss"] for h in history),
                "test_acc_curve": curve_text(h["test_acc"] for h in history),
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if not all(math.isfinite(v) for v in test_loss):
        row["status"] = "failed: the test loss is not finite"
    return row




# ------------------------------------------------------------------------------------------- campaign units


def make_units(blocks: Sequence[str], seeds: Sequence[int], protocol: Protocol,
               overrides: dict[str, dict[str, Any]] | None = None) -> list:
    """The campaign units of a comparison: every block with every seed, block by block."""
    from attnzoo.train.models import CHANNELS, FEATURE_SIZE
    from attnzoo.unit import Unit

    overrides = overrides or {}
    settings = {**protocol.record(), "data_root": protocol.data_root, "device": protocol.device}
    if protocol.threads is not None:  # only when given: the ids of comparisons made without it stay the same
        settings["threads"] = protocol.threads
    shape = (protocol.batch_size, CHANNELS, FEATURE_SIZE, FEATURE_SIZE)
    return [Unit.make("train", block, shape, {**settings, "seed": seed}, overrides.get(block, {}),
                      registry=protocol.registry) for block in blocks for seed in seeds]


_DATA: dict[tuple, Any] = {}


def task_data(protocol: Protocol, say: Callable[[str], None] = lambda text: None):
    """The comparison's images, loaded once per process (every unit of a comparison shares them)."""
    import time

    from attnzoo.train.data import load_task

    key = (protocol.dataset, protocol.data_root, protocol.train_size, protocol.test_size, protocol.data_seed,
           protocol.difficulty)
    if key not in _DATA:
        _DATA.clear()  # one comparison's images at a time
        started = time.perf_counter()
        data = load_task(protocol.dataset, protocol.data_root, protocol.train_size, protocol.test_size,
                         protocol.data_seed, protocol.difficulty)
        say(f"data: {data.source}: {len(data.train)} train + {len(data.test)} test images, "
            f"{int(data.train.labels.sum()) + int(data.test.labels.sum())} with a patch "
            f"({time.perf_counter() - started:.1f} s); device {protocol.device}")
        _DATA[key] = data
    return _DATA[key]


def run_unit(unit, context=None, say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Train one unit of kind "train" (attnzoo.campaign's runner): its row. A unit whose folder holds a
    checkpoint of an interrupted run continues from it (the driver clears them for a fresh comparison)."""
    import torch

    from attnzoo.train.loop import Dist, latest_checkpoint

    settings = unit.settings_dict
    seed = int(settings.pop("seed"))
    out = Path(context.out) if context is not None and context.out else DEFAULT_OUT
    protocol = Protocol(out=out, registry=tuple(unit.registry),
                        **{k: v for k, v in settings.items() if k in PROTOCOL_KEYS or k in UNIT_KEYS})
    run = TrainRun(unit.block, seed, unit.overrides_dict)
    threads = protocol.threads or (context.threads if context is not None else None)
    saved = torch.get_num_threads()
    if threads is not None:  # the training runs on the threads asked for
        torch.set_num_threads(threads)
    try:
        data = task_data(protocol, say)
        resume = latest_checkpoint(protocol.out / run.folder) is not None
        return run_one(run, protocol, data, Dist(device=torch.device(protocol.device)), resume=resume, say=say)
    finally:
        torch.set_num_threads(saved)
