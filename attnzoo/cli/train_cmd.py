"""``attnzoo train BLOCK``: the first article's white-patch task with any registry block. Heavy imports inside."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import (AmpOption, ChannelsLastOption, CompileOption, FormatOption, OutputOption, RegistryOption,
                                check_format, registry_dirs, say)
from attnzoo.errors import ConfigError

DEFAULT_OUT = Path("runs") / "train"
COMPARE_COLUMNS = ("block", "params", "epochs", "min_train_loss", "min_test_loss", "best_test_acc", "wall_s",
                   "img_per_s", "article_min_test_loss")


def parse_sets(items: list[str], blocks: list[str]) -> dict[str, dict]:
    """``--set key=value`` for every block, or ``--set block.key=value`` for one; per-block overrides."""
    from attnzoo.build import parse_override
    from attnzoo.train.models import NO_BLOCK

    per_block: dict[str, dict] = {name: {} for name in blocks}
    for item in items:
        key, sep, raw = item.partition("=")
        target, dot, key = key.strip().rpartition(".")
        key, value = parse_override(f"{key}{sep}{raw}")
        if dot:
            if target not in per_block:
                raise ConfigError(f"--set {item}: '{target}' is not one of the blocks trained ({', '.join(blocks)})")
            per_block[target][key] = value
        else:
            for name in blocks:
                if name != NO_BLOCK or len(blocks) == 1:
                    per_block[name][key] = value
    return per_block


@app.command("train")
def train_command(
    block: Optional[str] = typer.Argument(None, help="Registry block in place of the attention layer; 'cnn' for none."),
    compare: Optional[str] = typer.Option(None, "--compare", metavar="A,B,...",
                                          help="Train each block on the same data and seed, e.g. cnn,mha,conv-mha,cbam."),
    epochs: int = typer.Option(50, "--epochs", help="Total epochs (with --resume: the epoch to reach)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step (per process under torchrun)."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate (the article's 1e-4)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the weights, the shuffling, the patch draw and synthetic images."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    train_size: int = typer.Option(4000, "--train-size", help="Training images: the first N of the source."),
    test_size: int = typer.Option(1000, "--test-size", help="Test images: the next N after the training images."),
    dataset: str = typer.Option("auto", "--dataset",
                                help="stl10, folder, synthetic, or auto: STL10 when its files are found, else synthetic."),
    data_root: Optional[str] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="STL10 root (holding stl10_binary/) or the image folder."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="Run folder (default runs/train/BLOCK; with --compare, one sub-folder a block)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in the run folder."),
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="Block constructor override (repeatable); BLOCK.KEY=VALUE for one block of --compare."),
    compile_: bool = CompileOption,
    amp: bool = AmpOption,
    channels_last: bool = ChannelsLastOption,
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
    registry: Optional[List[str]] = RegistryOption,
) -> None:
    """Train the white-patch classifier of the first article (96x96 images, half with a white 16x16 patch).

    ConvPart (three 5x5 convolutions) -> BLOCK at (B, 32, 24, 24) -> mean over H, W -> Linear(32, 1) ->
    sigmoid; Adam and binary cross-entropy. Writes metrics.csv, loss.png, accuracy.png, attention.png and a
    checkpoint per epoch in the run folder; the summary table goes to stdout. Patch labels and positions
    are drawn per image from its global index and the seed (the article reused the same draws in every
    batch). Runs under torchrun with DistributedDataParallel.
    """
    import time

    from attnzoo.output import render
    from attnzoo.train import ARTICLE, TrainConfig, load_task, resolve_dataset, setup_processes, teardown_processes
    from attnzoo.train import train as run_training

    from attnzoo.output import check_dir, output_format, write_atomic

    fmt = output_format(output, check_format(fmt))  # paths checked before any data is loaded
    check_dir(out if out is not None else DEFAULT_OUT, "--out")
    if compare and block:
        raise ConfigError("give a block or --compare, not both")
    blocks = [b.strip() for b in (compare or block or "").split(",") if b.strip()]
    if not blocks:
        raise ConfigError("give a block to train (e.g. 'attnzoo train cbam') or --compare cnn,mha,conv-mha,cbam")
    if len(set(blocks)) != len(blocks):
        raise ConfigError("--compare lists a block twice")
    # Settings checked now, not after minutes of loading data.
    TrainConfig(block=blocks[0], out=Path("."), epochs=epochs, batch_size=batch_size, lr=lr).check()
    if train_size < 1 or test_size < 1:
        raise ConfigError("--train-size and --test-size must be at least 1")
    if compile_:
        from attnzoo.modes import check_compiler
        from attnzoo.train.loop import resolve_device

        check_compiler(resolve_device(device).type)
    overrides = parse_sets(list(sets or []), blocks)
    registry_list = tuple(registry_dirs(registry))
    from attnzoo.train.models import build_model

    # Each network is built once, at the batch size it trains with: a bad name, override or shape fails
    # here, before any data is loaded.
    models = {name: build_model(name, overrides[name], registry_list, seed, batch_size) for name in blocks}

    info = setup_processes(device)
    try:
        note_line = say if info.main else (lambda text: None)
        kind, root, note = resolve_dataset(dataset, data_root)
        if note:
            note_line(note)
        started = time.perf_counter()
        data = load_task(kind, root, train_size, test_size, seed)
        note_line(f"data: {data.source}: {len(data.train)} train + {len(data.test)} test images, "
            f"{int(data.train.labels.sum()) + int(data.test.labels.sum())} with a patch "
            f"({time.perf_counter() - started:.1f} s); device {info.device}"
            + (f", {info.world_size} processes" if info.active else ""))
        base = out or (DEFAULT_OUT / ("compare" if compare else blocks[0]))
        rows = []
        for name in blocks:
            cfg = TrainConfig(block=name, out=base / name if compare else base, overrides=overrides[name],
                              epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, train_size=train_size,
                              test_size=test_size, dataset=kind, resume=resume, registry=registry_list,
                              compile=compile_, amp=amp, channels_last=channels_last)
            summary = run_training(cfg, data, info, note_line, model=models.pop(name))
            summary.pop("history")
            summary["article_min_test_loss"] = ARTICLE.get(name, {}).get("min_test_loss")
            rows.append(summary)
            note_line(f"{name}: wrote {cfg.out}/metrics.csv, loss.png, accuracy.png, attention.png, checkpoints/")
        if info.main:
            columns = COMPARE_COLUMNS if compare else COMPARE_COLUMNS[:-1]
            if compare:
                from attnzoo.output import to_csv

                write_atomic(base / "compare.csv", to_csv(rows, columns))
            caption = ("article (50 epochs on STL10): min test loss cnn 0.054, mha 0.042, conv-mha 0.014, cbam 0.028"
                       if compare else None)
            render(rows, fmt, columns=columns, title=f"white-patch task: {data.source}", caption=caption,
                   output=output)
    finally:
        teardown_processes(info)
