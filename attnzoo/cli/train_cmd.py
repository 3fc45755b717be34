"""``attnzoo train BLOCK``: the first article's white-patch task with any registry block. Heavy imports inside."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import (AmpOption, ChannelsLastOption, CompileOption, FormatOption, RayOption,
                                RegistryOption, RetryFailedOption, ShardOption, SummaryOutputOption, bounded,
                                check_format, count, registry_dirs, say)
from attnzoo.errors import ConfigError

DEFAULT_OUT = Path("runs") / "train"
SINGLE_COLUMNS = ("block", "params", "epochs", "min_train_loss", "min_test_loss", "best_test_acc", "wall_s",
                  "img_per_s")
#: The summary table of a comparison: a mean ± standard deviation over seeds per cell where there are seeds.
TABLE_COLUMNS = ("block", "family", "seeds", "block_params", "macs", "fwd_ms", "min_test_loss", "last_test_loss",
                 "best_test_acc", "epochs_to_target", "article_min_test_loss")

HELP = "\n\n".join([
    "Train the white-patch classifier of the first article (96x96 images, half with a white 16x16 patch) "
    "with BLOCK as its attention layer, or compare many blocks over several seeds.",
    "ConvPart (three 5x5 convolutions) -> BLOCK at (B, 32, 24, 24) -> mean over H, W -> Linear(32, 1) -> "
    "sigmoid; Adam and binary cross-entropy. Writes metrics.csv, loss.png, accuracy.png, attention.png and a "
    "checkpoint per epoch in the run folder; the summary table goes to stdout. Patch labels and positions "
    "are drawn per image from its global index and the seed (the article reused the same draws in every "
    "batch). Runs under torchrun with DistributedDataParallel.",
    "Without STL10 files the images are synthetic, as hard as --difficulty says: easy (the images "
    "attnzoo made before it had difficulties), article (the default: the plain cnn's minimum test loss under the article's protocol "
    "lands near its 0.054 on STL10) or hard.",
    "Comparisons: --compare takes names, wildcards (*-attention) and families (channel), --all every "
    "one-input block that fits (B, 32, 24, 24) (--only filters it; blocks that cannot take the shape are "
    "listed with why), and --seeds K trains each K times (seeds SEED..SEED+K-1 for the weights and the batch "
    "order; the images stay those of --seed). OUT/runs.csv receives one row per block and seed as it "
    "finishes, with its curves and the block's params, MACs and forward time at the training shape; "
    "--resume trains only the runs not in it (refused if the settings differ). Every run is a campaign unit: "
    "--shard I/N trains one part (join them with attnzoo merge), --ray sends them to Ray. The summary gives, per "
    "block, the mean and standard deviation over seeds of the minimum test loss, of the mean test loss "
    "over the last epochs (--last-epochs, default a fifth) and of the best test accuracy, and the mean "
    "epochs to reach --target-loss over the seeds that did. 'attnzoo report OUT/runs.csv' draws the curves "
    "and cost against loss.",
    "Example: attnzoo train --compare cnn,mha,conv-mha,cbam,channel --seeds 3 --epochs 10 --out runs/zoo",
])


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


@app.command("train", help=HELP)
def train_command(
    block: Optional[str] = typer.Argument(None, help="Registry block in place of the attention layer; 'cnn' for none."),
    compare: Optional[str] = typer.Option(None, "--compare", metavar="A,B,...",
                                          help="Train each block on the same data: names, wildcards and families, e.g. cnn,mha,conv-mha,cbam."),
    every: bool = typer.Option(False, "--all", help="Compare every one-input block that fits (B, 32, 24, 24), and cnn."),
    only: Optional[str] = typer.Option(None, "--only", metavar="A,B,...",
                                       help="With --all: only the blocks these names, wildcards or families match."),
    seeds: int = typer.Option(1, "--seeds", metavar="K", help="Comparisons: train each block with K seeds, from --seed on."),
    target_loss: float = typer.Option(0.1, "--target-loss", metavar="LOSS", callback=bounded(0, what="a loss"),
                                      help="Comparisons: count the epochs until the test loss is at most this."),
    last_epochs: Optional[int] = typer.Option(None, "--last-epochs", metavar="N",
                                              help="Comparisons: last_test_loss is the mean over the last N epochs (default: a fifth of --epochs)."),
    epochs: int = typer.Option(50, "--epochs", help="Total epochs (with --resume: the epoch to reach)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step (per process under torchrun)."),
    lr: float = typer.Option(1e-4, "--lr", callback=bounded(0, strict=True, what="a learning rate"),
                             help="Adam learning rate (the article's 1e-4)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the weights, the shuffling, the patch draw and synthetic images."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    train_size: int = typer.Option(4000, "--train-size", help="Training images: the first N of the source."),
    test_size: int = typer.Option(1000, "--test-size", help="Test images: the next N after the training images."),
    dataset: str = typer.Option("auto", "--dataset",
                                help="stl10, folder, synthetic, or auto: STL10 when its files are found, else synthetic."),
    difficulty: str = typer.Option("article", "--difficulty", metavar="NAME",
                                   help="Synthetic images: easy, article, hard, or a level from 0 (easy) to 10."),
    data_root: Optional[str] = typer.Option(None, "--data-root", metavar="DIR",
                                            help="STL10 root (holding stl10_binary/) or the image folder."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="Run folder (default runs/train/BLOCK, or runs/train/compare with one sub-folder a run)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint (a comparison: the runs not in OUT/runs.csv)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace the run (or comparison) already in --out: its metrics, figures and "
                                        "checkpoints (a comparison's runs.csv, summary.csv and their .settings.json / "
                                        ".campaign.json too). Without it (or --resume) an --out holding a run is refused."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="CPU threads (torch.set_num_threads) for training and for measuring "
                                               "each block's cost (default: torch's)."),
    retry_failed: bool = RetryFailedOption,
    shard: Optional[str] = ShardOption,
    ray: Optional[str] = RayOption,
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="Block constructor override (repeatable); BLOCK.KEY=VALUE for one block of a comparison."),
    compile_: bool = CompileOption,
    amp: bool = AmpOption,
    channels_last: bool = ChannelsLastOption,
    fmt: str = FormatOption,
    output: Optional[str] = SummaryOutputOption,
    registry: Optional[List[str]] = RegistryOption,
) -> int:
    from attnzoo.output import check_dir, output_format, render
    from attnzoo.train import TrainConfig, setup_processes, teardown_processes
    from attnzoo.train import train as run_training
    from attnzoo.train.data import difficulty_level

    fmt = output_format(output, check_format(fmt))  # paths checked before any data is loaded
    check_dir(out if out is not None else DEFAULT_OUT, "--out")
    comparing = bool(compare) or every
    if comparing and block:
        raise ConfigError("give a block, or --compare / --all, not both")
    if compare and every:
        raise ConfigError("give --compare NAMES or --all (filtered by --only), not both")
    if only and not every:
        raise ConfigError("--only filters --all; with --compare, name the blocks there")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if not 0 < target_loss < 1:
        raise ConfigError(f"--target-loss must be between 0 and 1 (a binary cross-entropy), got {target_loss}")
    difficulty_level(difficulty)
    # Settings checked now, not after minutes of loading data.
    TrainConfig(block="cnn", out=Path("."), epochs=epochs, batch_size=batch_size, lr=lr).check()
    if train_size < 1 or test_size < 1:
        raise ConfigError("--train-size and --test-size must be at least 1")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if resume and overwrite:
        raise ConfigError("give --resume (continue what --out holds) or --overwrite (replace it), not both")
    if compile_:
        from attnzoo.modes import check_compiler
        from attnzoo.train.loop import resolve_device

        check_compiler(resolve_device(device).type)
    registry_list = tuple(registry_dirs(registry))
    if comparing:
        from attnzoo.train.zoo import Protocol

        protocol = Protocol(out=out or DEFAULT_OUT / "compare", epochs=epochs, batch_size=batch_size, lr=lr,
                            train_size=train_size, test_size=test_size, difficulty=difficulty, data_seed=seed,
                            target_loss=target_loss, last_epochs=last_epochs, registry=registry_list,
                            compile=compile_, amp=amp, channels_last=channels_last, threads=threads)
        protocol.check()
        return _compare(protocol, (compare or only or "").split(","), every, list(sets or []), seeds, seed, device,
                        dataset, data_root, resume, retry_failed, shard, ray, fmt, output, overwrite)
    if not block:
        raise ConfigError("give a block to train (e.g. 'attnzoo train cbam') or --compare cnn,mha,conv-mha,cbam")
    overrides = parse_sets(list(sets or []), [block])[block]
    from attnzoo.train.models import build_model

    # The network is built at the batch size it trains with: a bad name, override or shape fails here,
    # before any data is loaded.
    model = build_model(block, overrides, registry_list, seed, batch_size)
    base = out or (DEFAULT_OUT / block)
    _keep_or_clear(base, resume, overwrite)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    info = setup_processes(device)
    try:
        note_line = say if info.main else (lambda text: None)
        data, kind = _load(dataset, data_root, train_size, test_size, seed, difficulty, info, note_line)
        cfg = TrainConfig(block=block, out=base, overrides=overrides, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed, train_size=train_size, test_size=test_size, dataset=kind, difficulty=difficulty,
                          resume=resume, registry=registry_list, compile=compile_, amp=amp,
                          channels_last=channels_last)
        try:
            summary = run_training(cfg, data, info, note_line, model=model)
        except (RuntimeError, ValueError, FloatingPointError) as exc:  # the block's own failure, said in a line
            from attnzoo.cli.common import debug_enabled
            from attnzoo.errors import AttnzooError

            if debug_enabled() or isinstance(exc, AttnzooError):
                raise
            note_line(f"attnzoo: {block} failed while training: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                      " (--debug shows the traceback)")
            return 1
        summary.pop("history")
        note_line(f"{block}: wrote {cfg.out}/metrics.csv, loss.png, accuracy.png, attention.png, checkpoints/")
        if info.main:
            render([summary], fmt, columns=SINGLE_COLUMNS, title=f"white-patch task: {data.source}", output=output)
    finally:
        teardown_processes(info)
    return 0


def _keep_or_clear(base: Path, resume: bool, overwrite: bool) -> None:
    """A run folder that holds a run already is continued (--resume), replaced (--overwrite: its files and
    checkpoints removed, and said) or refused: a run never lands silently on another's metrics and
    checkpoints (a later --resume would continue the wrong one)."""
    import os

    from attnzoo.train.loop import clear_run, run_files

    found = run_files(base)
    if not found or resume:
        return
    if not overwrite:
        raise ConfigError(f"--out {base} holds a run already ({', '.join(found)}): pass --resume to continue it, "
                          "or --overwrite to replace it")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one process clears
        clear_run(base)
        say(f"--overwrite: removed the run in {base} ({', '.join(found)})")


def _load(dataset, data_root, train_size, test_size, seed, difficulty, info, note_line):
    """The task's images, said in a line: ``(TaskData, dataset kind)``."""
    import time

    from attnzoo.train import load_task, resolve_dataset

    kind, root, note = resolve_dataset(dataset, data_root)
    if note:
        note_line(note)
    started = time.perf_counter()
    data = load_task(kind, root, train_size, test_size, seed, difficulty)
    note_line(f"data: {data.source}: {len(data.train)} train + {len(data.test)} test images, "
              f"{int(data.train.labels.sum()) + int(data.test.labels.sum())} with a patch "
              f"({time.perf_counter() - started:.1f} s); device {info.device}"
              + (f", {info.world_size} processes" if info.active else ""))
    return data, kind


def _compare(protocol, patterns, every, sets, seeds, seed, device, dataset, data_root, resume, retry_failed, shard,
             ray, fmt, output, overwrite: bool = False) -> int:
    """A comparison as a campaign: one unit per block and seed (attnzoo.train.zoo.make_units), those not in
    OUT/runs.csv (with --resume) or outside this --shard run by the executor (here, or Ray), each row
    appended to OUT/runs.csv as it arrives; then the summary per block of the rows this process holds."""
    import dataclasses
    import shutil

    from attnzoo.campaign.driver import Campaign
    from attnzoo.campaign.executors import make_executor
    from attnzoo.campaign.rows import RowFile
    from attnzoo.campaign.shard import parse_shard
    from attnzoo.cli.common import debug_enabled
    from attnzoo.output import render, to_csv, write_atomic
    from attnzoo.train import ARTICLE, resolve_dataset
    from attnzoo.train.loop import checkpoint_dir, resolve_device
    from attnzoo.train.zoo import expand_names, make_units, select_blocks
    from attnzoo.train_results import RUN_COLUMNS, SUMMARY_COLUMNS, summarise, with_spread

    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a comparison trains its runs one by one: under torchrun, train one block "
                          "(spread a comparison with --shard I/N or --ray instead)")
    patterns = [p for p in patterns if p.strip()]
    if not patterns and not every:
        raise ConfigError("--compare needs block names, e.g. --compare cnn,mha,conv-mha,cbam")
    if len(set(patterns)) != len(patterns):
        raise ConfigError("--compare lists a block twice")
    part = parse_shard(shard)
    # Every block is built once here, at the batch it trains with, with its --set overrides: a bad name,
    # override or shape fails before any data is loaded (each run then builds its network from its seed).
    overrides = parse_sets(sets, expand_names(patterns, every, protocol.registry))
    blocks, skipped = select_blocks(patterns, every, protocol.registry, overrides, protocol.batch_size)
    for name, why in skipped.items():
        say(f"left out {name}: {why}")
    kind, root, note = resolve_dataset(dataset, data_root)
    if note:
        say(note)
    protocol = dataclasses.replace(protocol, dataset=kind, data_root=root,
                                   device=str(resolve_device(device)) if ray is None else device)
    seed_list = list(range(seed, seed + seeds))
    units = make_units(blocks, seed_list, protocol, overrides)
    base = Path(protocol.out)
    base.mkdir(parents=True, exist_ok=True)
    rows_file = RowFile(base / "runs.csv", "csv", RUN_COLUMNS)
    record = {**protocol.record(), "overrides": {f"{b} {units[0].shape_text}": o for b, o in overrides.items() if o}}
    campaign = Campaign("train", units, shard=part, row_file=rows_file, resume=resume, retry_failed=retry_failed,
                        keep_file=True, overwrite=overwrite, with_plan=ray is not None)
    if resume:
        rows_file.load()
        record = rows_file.check_settings(record)  # names the setting that differs
    # Run folders go under OUT, on whichever machine trains the unit (the same absolute path on a Ray node).
    executor = make_executor(ray, raise_errors=debug_enabled(), out=str(base.resolve()))
    campaign.open(check_rows=False)  # the settings record guards a resume, and a resume may add blocks or seeds
    if overwrite and (base / "summary.csv").is_file():
        campaign.cleared.append("summary.csv")
        (base / "summary.csv").unlink()
    if campaign.cleared:
        say(f"--overwrite: replacing {', '.join(campaign.cleared)} in {base} (and the checkpoints of its runs)")
    rows_file.save_settings(record)
    todo = [unit for unit in campaign.selected if unit.id not in campaign.done]
    if not resume:  # a fresh comparison: no checkpoint of an older one may be continued
        for unit in todo:
            folder = checkpoint_dir(base / unit.block / f"seed-{unit.settings_dict['seed']}")
            if folder.is_dir():
                shutil.rmtree(folder)
    say(f"{len(blocks)} blocks x {len(seed_list)} seeds: {len(todo)} runs to train"
        + (f", {len(campaign.done)} already in {rows_file.path}" if campaign.done else "")
        + (f" (shard {part}: {len(campaign.selected)} of {len(campaign.units)} runs)" if part is not None else ""))
    costs = _block_costs(sorted({unit.block for unit in todo}), overrides, protocol, executor)
    if todo and protocol.train_size > 1 and protocol.train_size % protocol.batch_size == 1:
        say(f"{protocol.train_size} training images make a last batch of 1 image, which batch normalisation over "
            f"pooled values cannot take: it joins the batch before ({protocol.batch_size + 1} images), in every run")
    if todo and not executor.remote:
        from attnzoo.train.zoo import task_data

        task_data(dataclasses.replace(protocol), say)  # loaded once, said once, before the first run
    finished = [0]

    def on_row(row):
        finished[0] += 1
        ok = row["status"] == "ok"
        shown = f"min test loss {row['min_test_loss']:.4g}" if ok else row["status"]
        say(f"[{finished[0]}/{len(todo)}] {row['block']} seed {row['seed']}: {shown}"
            + (f" ({row['wall_s']} s)" if ok and row.get("wall_s") is not None else ""))

    rows = campaign.run(_WithCost(executor, costs), on_row=on_row)
    summary = summarise(rows, ARTICLE)
    write_atomic(base / "summary.csv", to_csv(summary, SUMMARY_COLUMNS))
    say(f"wrote {rows_file.path} ({len(rows_file.rows)} runs) and {base / 'summary.csv'}")
    caption = (f"{count(protocol.epochs, 'epoch')}, {protocol.train_size}/{protocol.test_size} images, mean ± std over "
               f"{len(seed_list)} seeds; epochs_to_target: to test loss {protocol.target_loss}; last_test_loss: "
               f"the mean of the last {count(protocol.last, 'epoch')} · article (50 epochs on STL10): min test loss cnn "
               "0.054, mha 0.042, conv-mha 0.014, cbam 0.028")
    failed = [row for row in rows if str(row.get("status")) != "ok"]
    lost = {}
    for row in failed:
        lost[str(row["block"])] = lost.get(str(row["block"]), 0) + 1
    if fmt == "table" and not output:
        shown = [{**line, "seeds": f"{line['seeds']} ({lost[line['block']]} failed)" if line["block"] in lost
                  else line["seeds"], **{c: with_spread(line[c], line[f"{c}_std"]) for c in
                             ("min_test_loss", "last_test_loss", "best_test_acc")},
                  "epochs_to_target": (f"{line['epochs_to_target']:.3g} ({line['reached_target']})"
                                       if line["epochs_to_target"] is not None else f"- ({line['reached_target']})")}
                 for line in summary]
        render(shown, "table", columns=TABLE_COLUMNS, title=f"white-patch task: {protocol.dataset}"
               + (f", difficulty {protocol.difficulty}" if protocol.dataset == "synthetic" else ""), caption=caption)
    else:
        render(summary, fmt, columns=SUMMARY_COLUMNS, output=output)
    for row in failed:
        say(f"attnzoo: {row['block']} seed {row['seed']}: {row['status']}")
    if failed:
        say(f"attnzoo: {len(failed)} of {len(rows)} runs failed ({', '.join(sorted(lost))}); their rows are in "
            f"{rows_file.path} (--resume --retry-failed trains them again)")
        return 1
    return 0


def _block_costs(blocks, overrides, protocol, executor) -> dict[str, dict]:
    """Each block's cost at the training shape, by block: profile units (the profiler's runner, the one path
    every cost takes) run on the comparison's executor before the runs. A few seconds: measured again on a
    resume rather than kept in a file beside the runs."""
    from attnzoo.campaign.driver import Campaign
    from attnzoo.profiling.runner import ProfileOptions, plan_units
    from attnzoo.train.models import CHANNELS, FEATURE_SIZE, NO_BLOCK

    named = [block for block in blocks if block != NO_BLOCK]
    if not named:
        return {}
    options = ProfileOptions(device=protocol.device, mode="infer", min_time=0.1,
                             threads=protocol.threads).checked(here=not executor.remote)
    shape = (protocol.batch_size, CHANNELS, FEATURE_SIZE, FEATURE_SIZE)
    units = [unit for block in named
             for unit in plan_units([block], [shape], options, overrides.get(block), protocol.registry)]
    return {row["block"]: row for row in Campaign("train", units).run(executor)}


class _WithCost:
    """The executor's training rows, each joined to its block's cost before the campaign writes it."""

    def __init__(self, executor, costs: dict[str, dict]):
        self.executor = executor
        self.costs = costs
        self.remote = executor.remote

    def run(self, units, before=None, progress=None):
        from attnzoo.train.models import NO_BLOCK
        from attnzoo.train_results import join_cost

        for row in self.executor.run(units, before=before, progress=progress):
            yield join_cost(row, self.costs.get(row["block"]), no_block=row["block"] == NO_BLOCK)
