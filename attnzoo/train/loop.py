"""Training and evaluation: Adam, binary cross-entropy, per-epoch metrics, checkpoints, figures, DDP.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) each process joins a process group (gloo on
CPU, nccl on CUDA), wraps the model in DistributedDataParallel and takes its DistributedSampler-style
shard of every epoch's order; metrics are summed over the processes; only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.errors import ConfigError
from attnzoo.output import to_csv
from attnzoo.train.data import TaskData, batch_bounds, epoch_order, shard
from attnzoo.train.models import PatchNet, build_model, count_parameters

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "train_s", "epoch_s",
                  "train_img_per_s", "lr", "batch_size")
SUMMARY_COLUMNS = ("block", "params", "block_params", "epochs", "min_train_loss", "min_test_loss",
                   "best_test_acc", "wall_s", "img_per_s")
# Settings a checkpoint must share with the run that resumes it.
RESUME_KEYS = ("block", "overrides", "seed", "train_size", "test_size", "dataset", "difficulty")
VIZ_IMAGES = 6


@dataclass
class TrainConfig:
    block: str
    out: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 0
    train_size: int = 4000
    test_size: int = 1000
    dataset: str = "synthetic"
    difficulty: str = "article"  # of synthetic images (attnzoo.train.data.DIFFICULTIES)
    resume: bool = False
    registry: tuple[str, ...] = ()
    compile: bool = False  # torch.compile the network
    amp: bool = False  # autocast: bfloat16 on CPU, float16 on CUDA (with a gradient scaler)
    channels_last: bool = False  # network and images in channels-last memory format
    keep_checkpoints: bool = True  # False: only the latest epoch's checkpoint stays (a comparison's many runs)
    figures: str = "every"  # draw loss.png, accuracy.png, attention.png after every epoch, the "last" only, or "none"

    def check(self) -> None:
        if self.epochs < 1:
            raise ConfigError("--epochs must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.figures not in ("every", "last", "none"):
            raise ConfigError(f"figures must be every, last or none, got '{self.figures}'")
        if not self.lr > 0:
            raise ConfigError("--lr must be positive")

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        data["registry"] = list(self.registry)
        return data


# ------------------------------------------------------------------------------------------- processes


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked, but no CUDA device is available")
    return device


def setup_processes(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    base = resolve_device(device)
    if world_size <= 1:
        return Dist(device=base)
    import torch.distributed as dist

    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=base)


def teardown_processes(info: Dist) -> None:
    if info.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _all_sum(values: list[float], info: Dist) -> list[float]:
    if not info.active:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _barrier(info: Dist) -> None:
    if info.active:
        import torch.distributed as dist

        dist.barrier()


# ------------------------------------------------------------------------------------------- checkpoints


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


#: The files a run writes in its folder (besides checkpoints/).
RUN_FILES = ("metrics.csv", "loss.png", "accuracy.png", "attention.png")


def run_files(out: Path) -> list[str]:
    """What of a run ``out`` holds already (its files and checkpoint folder), as names to show."""
    found = [name for name in RUN_FILES if (Path(out) / name).is_file()]
    if any(checkpoint_dir(Path(out)).glob("epoch-*.pt")):
        found.append("checkpoints/")
    return found


def clear_run(out: Path) -> list[str]:
    """Remove the run in ``out`` (its files and checkpoints, nothing else); returns what was removed."""
    import shutil

    found = run_files(out)
    for name in RUN_FILES:
        (Path(out) / name).unlink(missing_ok=True)
    if checkpoint_dir(Path(out)).is_dir():
        shutil.rmtree(checkpoint_dir(Path(out)))
    return found


def latest_checkpoint(out: Path) -> Path | None:
    found = []
    for path in checkpoint_dir(out).glob("epoch-*.pt"):
        match = re.fullmatch(r"epoch-(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def save_checkpoint(path: Path, model: PatchNet, optimizer: torch.optim.Optimizer, epoch: int,
                    history: list[dict], cfg: TrainConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "history": history, "config": cfg.record(), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the random states a checkpoint saved: the CPU's and, where there is CUDA, each device's
    (dropout and other random operators on the GPU draw from those)."""
    torch.set_rng_state(state["rng"])
    cuda_states = list(state.get("cuda_rng") or [])
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])


def load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    saved, now = state.get("config", {}), cfg.record()
    for key in RESUME_KEYS:
        if saved.get(key) != now[key]:
            raise ConfigError(f"{path} was made with {key}={saved.get(key)!r}, this run has {key}={now[key]!r}; "
                              "resume with the same settings or use another --out")
    return state


# ------------------------------------------------------------------------------------------- epochs


class TrainStep:
    """One optimisation step of the network, in the measurement modes ``profile`` offers: channels-last
    memory format, ``torch.compile`` and autocast (bfloat16 on the CPU; float16 on CUDA, with a gradient
    scaler). Returns the loss and the logits of the batch."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, compile_: bool = False,
                 amp: bool = False, channels_last: bool = False):
        from attnzoo.modes import autocast

        if channels_last:
            net.to(memory_format=torch.channels_last)
        self.net = torch.compile(net) if compile_ else net
        self.optimizer = optimizer
        self.channels_last = channels_last
        device = str(next(net.parameters()).device)
        self.autocast = lambda: autocast(device, amp)
        self.scaler = torch.amp.GradScaler("cuda") if amp and device.startswith("cuda") else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss, logits


def _viz_positions(test_labels: torch.Tensor) -> torch.Tensor:
    """Six test images, half with a patch where the test set allows, in test-set order."""
    with_patch = torch.nonzero(test_labels == 1).flatten()[: VIZ_IMAGES // 2]
    without = torch.nonzero(test_labels == 0).flatten()[: VIZ_IMAGES - len(with_patch)]
    chosen = torch.cat([with_patch, without])
    if len(chosen) < VIZ_IMAGES:
        chosen = torch.arange(min(VIZ_IMAGES, len(test_labels)))
    return chosen.sort().values


def evaluate(model: PatchNet, data, batch_size: int, info: Dist) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy over ``data`` (each process its share, summed)."""
    model.eval()
    order = torch.arange(len(data))[info.rank::info.world_size] if info.active else None
    loss_sum = correct = count = 0.0
    with torch.no_grad():
        for x, y in data.batches(batch_size, order, info.device):
            logits = model(x)
            loss_sum += float(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
            correct += float(((logits > 0).float() == y).sum())
            count += len(y)
    loss_sum, correct, count = _all_sum([loss_sum, correct, count], info)
    return loss_sum / max(count, 1), correct / max(count, 1)


def write_metrics(history: list[dict], path: Path) -> None:
    from attnzoo.output import write_atomic

    write_atomic(path, to_csv(history, METRIC_COLUMNS))


def summarise(cfg: TrainConfig, model: PatchNet, history: list[dict]) -> dict[str, Any]:
    train_s = sum(row["train_s"] for row in history)
    images = sum(row["train_images"] for row in history)
    return {
        "block": cfg.block,
        "params": count_parameters(model),
        "block_params": count_parameters(model.block),
        "epochs": len(history),
        "min_train_loss": min((row["train_loss"] for row in history), default=float("nan")),
        "min_test_loss": min((row["test_loss"] for row in history), default=float("nan")),
        "best_test_acc": max((row["test_acc"] for row in history), default=float("nan")),
        "wall_s": round(sum(row["epoch_s"] for row in history), 2),
        "img_per_s": round(images / train_s, 1) if train_s > 0 else float("nan"),
    }


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}  {task.fields[extra]}"),
                    TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled)


def train(cfg: TrainConfig, data: TaskData, info: Dist | None = None,
          say: Callable[[str], None] = lambda text: None, model: PatchNet | None = None) -> dict[str, Any]:
    """Train ``cfg.block`` on ``data``; write metrics, curves, attention maps and checkpoints (rank 0).

    ``model``: the network already built by ``build_model(cfg.block, cfg.overrides, cfg.registry, cfg.seed,
    cfg.batch_size)`` (the CLI builds it first, to refuse a bad block before loading data); built here if None.
    Returns the summary row (see SUMMARY_COLUMNS) with ``history`` added.
    """
    from attnzoo.train import viz

    cfg.check()
    info = info or Dist()
    out = Path(cfg.out)
    if model is None:
        model = build_model(cfg.block, cfg.overrides, cfg.registry, cfg.seed, cfg.batch_size)
    model = model.to(info.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict] = []
    start = 0
    if cfg.resume:
        path = latest_checkpoint(out)
        if path is None:
            say(f"{cfg.block}: no checkpoint in {checkpoint_dir(out)}; starting at epoch 1")
        else:
            state = load_checkpoint(path, cfg)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            history, start = list(state["history"]), int(state["epoch"])
            restore_rng(state)
            say(f"{cfg.block}: resuming from {path} (epoch {start} done)")
    else:
        torch.manual_seed(cfg.seed + 3)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
    if start >= cfg.epochs:
        say(f"{cfg.block}: {start} epochs already done (--epochs {cfg.epochs}); nothing to train")
    if info.main:
        out.mkdir(parents=True, exist_ok=True)

    if cfg.channels_last:  # before DistributedDataParallel registers the parameters
        model.to(memory_format=torch.channels_last)
    net = model
    if info.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    step = TrainStep(net, optimizer, compile_=cfg.compile, amp=cfg.amp, channels_last=cfg.channels_last)
    viz_positions = _viz_positions(data.test.labels)
    with _progress(info.main) as progress:
        for epoch in range(start + 1, cfg.epochs + 1):
            started = time.perf_counter()
            order = shard(epoch_order(len(data.train), cfg.seed, epoch), info.rank, info.world_size)
            steps = len(batch_bounds(len(order), cfg.batch_size, merge_single=True))
            if epoch == start + 1 and len(order) > 1 and len(order) % cfg.batch_size == 1:
                say(f"{cfg.block}: {len(order)} training images make a last batch of 1 image, which batch "
                    f"normalisation over pooled values cannot take: it joins the batch before "
                    f"({cfg.batch_size + 1} images), every epoch")
            task = progress.add_task(f"{cfg.block} epoch {epoch}/{cfg.epochs}", total=steps, loss=0.0, acc=0.0,
                                     extra="")
            net.train()
            loss_sum = correct = count = 0.0
            for x, y in data.train.batches(cfg.batch_size, order, info.device, merge_single=True):
                loss, logits = step(x, y)
                loss_sum += float(loss.detach()) * len(y)
                correct += float(((logits.detach() > 0).float() == y).sum())
                count += len(y)
                progress.update(task, advance=1, loss=loss_sum / count, acc=correct / count)
            train_s = time.perf_counter() - started
            loss_sum, correct, count = _all_sum([loss_sum, correct, count], info)
            test_loss, test_acc = evaluate(model, data.test, cfg.batch_size, info)
            epoch_s = time.perf_counter() - started
            row = {"epoch": epoch, "train_loss": loss_sum / count, "train_acc": correct / count,
                   "test_loss": test_loss, "test_acc": test_acc, "train_s": round(train_s, 3),
                   "epoch_s": round(epoch_s, 3), "train_img_per_s": round(count / train_s, 1),
                   "lr": cfg.lr, "batch_size": cfg.batch_size, "train_images": int(count)}
            history.append(row)
            progress.update(task, loss=row["train_loss"], acc=row["train_acc"],
                            extra=f"| test loss {test_loss:.4f} acc {test_acc:.3f}")
            draw = cfg.figures == "every" or (cfg.figures == "last" and epoch == cfg.epochs)
            if info.main:
                write_metrics(history, out / "metrics.csv")
            if info.main and draw:
                viz.plot_curves(history, out, cfg.block)
                x, y = data.test.batch(viz_positions, info.device)
                with torch.no_grad():
                    features, weights = model.features(x, return_attention=True)
                    probs = torch.sigmoid(model(x))
                viz.plot_attention(x, features, weights, y, probs, out / "attention.png",
                                   f"{cfg.block}, epoch {epoch}: test images")
            if info.main:
                save_checkpoint(checkpoint_dir(out) / f"epoch-{epoch:03d}.pt", model, optimizer, epoch, history, cfg)
                previous = checkpoint_dir(out) / f"epoch-{epoch - 1:03d}.pt"
                if not cfg.keep_checkpoints and previous.is_file():
                    previous.unlink()
            _barrier(info)
    if info.main and history and start >= cfg.epochs:
        write_metrics(history, out / "metrics.csv")
    summary = summarise(cfg, model, history)
    summary["history"] = history
    return summary
