"""``attnzoo train``: data loaders, the per-index patch draw, the models, the CLI, resume and torchrun."""

from __future__ import annotations

import csv
import io
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnzoo.cli import run
from attnzoo.errors import ConfigError, ShapeError, UnknownBlockError
from attnzoo.train.data import (PATCH_SIZE, PatchDataset, insert_patches, load_image_folder, load_stl10,
                                patch_draws, resolve_dataset, scale_images, shard, synthetic_images)
from attnzoo.train.models import build_model

TINY = ["--train-size", "64", "--test-size", "32", "--batch-size", "32", "--dataset", "synthetic", "--device", "cpu"]


def read_metrics(folder: Path) -> list[dict]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------------------------- STL10


def write_stl10(folder: Path, images: np.ndarray, labels: np.ndarray, split: str = "train") -> None:
    """Write images (N, 3, 96, 96) as the official files do: each channel plane in column-major order."""
    folder.mkdir(parents=True, exist_ok=True)
    images.transpose(0, 1, 3, 2).astype(np.uint8).tofile(folder / f"{split}_X.bin")
    labels.astype(np.uint8).tofile(folder / f"{split}_y.bin")


def test_stl10_loader_reads_column_major_planes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 3, 96, 96), dtype=np.uint8)
    write_stl10(tmp_path / "stl10_binary", images, np.arange(12) % 10 + 1)
    loaded, labels = load_stl10(tmp_path, 12)
    assert loaded.dtype == torch.uint8 and loaded.shape == (12, 3, 96, 96)
    assert np.array_equal(loaded.numpy(), images)
    assert labels.tolist() == [i % 10 + 1 for i in range(12)]
    # One pixel by hand: image 3, channel 1, row 5, column 70 sits at plane offset column * 96 + row.
    raw = np.fromfile(tmp_path / "stl10_binary" / "train_X.bin", dtype=np.uint8)
    assert raw[3 * 27648 + 1 * 9216 + 70 * 96 + 5] == loaded[3, 1, 5, 70].item() == images[3, 1, 5, 70]
    # A prefix, and the stl10_binary folder given directly.
    assert torch.equal(load_stl10(tmp_path / "stl10_binary", 5)[0], loaded[:5])
    with pytest.raises(ConfigError, match="holds 12 images"):
        load_stl10(tmp_path, 13)
    assert resolve_dataset("auto", str(tmp_path))[:2] == ("stl10", str(tmp_path))


def test_missing_or_wrong_data_root_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--data-root"):
        resolve_dataset("stl10", None)
    with pytest.raises(ConfigError, match="no STL10"):
        resolve_dataset("stl10", str(tmp_path))
    with pytest.raises(ConfigError, match="not found"):
        resolve_dataset("folder", str(tmp_path / "absent"))
    kind, root, note = resolve_dataset("auto", str(tmp_path))
    assert (kind, root) == ("synthetic", None) and "synthetic" in note


# ----------------------------------------------------------------------------------------------- folder


def test_folder_loader_resizes_and_centre_crops(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    wide = rng.integers(0, 256, size=(96, 192, 3), dtype=np.uint8)  # height 96: only cropped
    Image.fromarray(square).save(tmp_path / "a.png")
    Image.fromarray(wide).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, size=(40, 70, 3), dtype=np.uint8)).save(tmp_path / "sub" / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_image_folder(tmp_path, 3)
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 96, 96)
    assert np.array_equal(images[0].numpy(), square.transpose(2, 0, 1))
    assert np.array_equal(images[1].numpy(), wide[:, 48:144].transpose(2, 0, 1))
    with pytest.raises(ConfigError, match="holds 3 images"):
        load_image_folder(tmp_path, 4)


# ----------------------------------------------------------------------------------------------- synthetic


def test_synthetic_images_are_deterministic_varied_and_prefix_stable():
    a, b = synthetic_images(8, seed=1), synthetic_images(8, seed=1)
    assert a.dtype == torch.uint8 and a.shape == (8, 3, 96, 96)
    assert torch.equal(a, b)
    assert not torch.equal(a, synthetic_images(8, seed=2))
    assert torch.equal(synthetic_images(130, seed=1)[:8], a)  # image i does not depend on the count
    assert a.float().std() > 20  # structure, not a flat field
    assert len({img.float().mean().round().item() for img in a}) > 4  # the images differ


# ----------------------------------------------------------------------------------------------- patches


def test_patch_draw_is_per_global_index():
    label, row, col = patch_draws(torch.arange(4000), seed=0)
    assert 0.45 < label.float().mean() < 0.55
    assert row.min() >= 0 and row.max() < 96 - PATCH_SIZE and col.min() >= 0 and col.max() < 96 - PATCH_SIZE
    assert len(set(row.tolist())) == 80 and len(set(col.tolist())) == 80
    # The article's flaw: every batch repeated the same draws. Here consecutive batches differ ...
    first, second = label[:32], label[32:64]
    assert not torch.equal(first, second) or not torch.equal(row[:32], row[32:64])
    # ... and the same index gives the same draw, whatever it is batched with or in which order.
    again = patch_draws(torch.tensor([37, 5, 3999]), seed=0)
    for got, full in zip(again, (label, row, col)):
        assert got.tolist() == [full[37].item(), full[5].item(), full[3999].item()]
    assert not torch.equal(patch_draws(torch.arange(64), seed=1)[0], label[:64])


def test_insert_patches_exactly_and_batches_agree_per_index():
    images = synthetic_images(40, seed=0)
    data = PatchDataset(images, torch.arange(1000, 1040), seed=3)
    x, y = data.batch(torch.arange(40))
    base = scale_images(images)
    for i in range(40):
        r, c = data.rows[i].item(), data.cols[i].item()
        expected = base[i].clone()
        if y[i] == 1:
            expected[:, r:r + PATCH_SIZE, c:c + PATCH_SIZE] = 1.0
        assert torch.equal(x[i], expected)
    # The same images in another order and batch size get the same labels and patches.
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    x2, y2 = data.batch(order[:7])
    assert torch.equal(x2, x[order[:7]]) and torch.equal(y2, y[order[:7]])
    assert torch.equal(insert_patches(base[:2], torch.zeros(2, dtype=torch.long), data.rows[:2], data.cols[:2]),
                       base[:2])


def test_shard_splits_like_distributed_sampler():
    order = torch.arange(10)
    parts = [shard(order, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]
    assert set(torch.cat(parts).tolist()) == set(range(10))
    assert torch.equal(shard(order, 0, 1), order)


# ----------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["cnn", "mha", "cbam"])
def test_model_forward(name):
    model = build_model(name, seed=0)
    x = torch.randn(2, 3, 96, 96)
    logits = model(x)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    features, weights = model.features(x, return_attention=True)
    assert features.shape == (2, 32, 24, 24)
    if name == "mha":
        assert weights.shape == (2, 8, 576, 576)
    else:
        assert weights is None


def test_models_share_convpart_and_head_initialisation():
    cnn, cbam = build_model("cnn", seed=4), build_model("cbam", seed=4)
    assert torch.equal(cnn.conv.c1a.weight, cbam.conv.c1a.weight)
    assert torch.equal(cnn.final.weight, cbam.final.weight)


def test_bad_blocks_are_user_errors():
    with pytest.raises(UnknownBlockError):
        build_model("no-such-block")
    with pytest.raises(ShapeError):
        build_model("cbam", {"reduction": 64})  # 32 channels // 64 = 0 hidden units
    with pytest.raises(ShapeError):
        build_model("mha", {"num_heads": 5})


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_train_writes_outputs_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "cbam", "--epochs", "1", *TINY, "--out", str(out), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("block,params,epochs,min_train_loss")  # the table is the data on stdout
    assert "epoch" not in captured.out.splitlines()[1]
    for name in ("metrics.csv", "loss.png", "accuracy.png", "attention.png", "checkpoints/epoch-001.pt"):
        assert (out / name).is_file(), name
    assert [row["epoch"] for row in read_metrics(out)] == ["1"]

    assert run(["train", "cbam", "--epochs", "2", *TINY, "--out", str(out), "--resume"]) == 0
    assert "resuming" in capsys.readouterr().err
    resumed = read_metrics(out)
    assert [row["epoch"] for row in resumed] == ["1", "2"]
    assert (out / "checkpoints" / "epoch-002.pt").is_file()

    # Resuming reproduces an uninterrupted run.
    straight = tmp_path / "straight"
    assert run(["train", "cbam", "--epochs", "2", *TINY, "--out", str(straight)]) == 0
    for a, b in zip(read_metrics(straight), resumed):
        assert float(a["test_loss"]) == pytest.approx(float(b["test_loss"]), rel=1e-5)
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)

    # A resume with other data settings is refused in one line.
    assert run(["train", "cbam", "--epochs", "3", *TINY, "--seed", "9", "--out", str(out), "--resume"]) == 2
    assert "seed" in capsys.readouterr().err


def test_cli_compare_shares_data_and_prints_one_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["train", "--compare", "cnn,se", "--epochs", "1", "--train-size", "32", "--test-size", "16",
            "--batch-size", "16", "--dataset", "synthetic", "--out", str(out), "--format", "csv"]
    assert run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("article_min_test_loss")
    assert [line.split(",")[0] for line in lines[1:]] == ["cnn", "se"]
    assert lines[1].endswith("0.05412")
    assert (out / "runs.csv").is_file() and (out / "summary.csv").is_file()
    assert (out / "se" / "seed-0" / "metrics.csv").is_file()


@pytest.mark.parametrize("args, text", [
    (["train", "no-such-block"], "unknown block"),
    (["train", "cbam", "--dataset", "stl10"], "--data-root"),
    (["train", "cbam", "--set", "reduction=64"], "cannot take"),
    (["train"], "give a block"),
])
def test_cli_errors_are_one_line(args, text, capsys, tmp_path):
    assert run([*args, "--epochs", "1", "--train-size", "8", "--test-size", "8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert text in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------------------------- torchrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTNZOO_DEBUG": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--nnodes", "1",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "attnzoo.train", "cbam", "--epochs", "1", "--train-size", "64", "--test-size", "32",
           "--batch-size", "16", "--dataset", "synthetic", "--device", "cpu", "--out", str(out), "--format", "csv"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("block,params") == 1  # only rank 0 prints the table
    assert "2 processes" in result.stderr
    rows = read_metrics(out)
    assert len(rows) == 1 and 0 < float(rows[0]["test_loss"]) < 5
    state = torch.load(out / "checkpoints" / "epoch-001.pt", weights_only=True)
    assert state["history"][0]["train_images"] == 64  # both shards counted


@pytest.mark.parametrize("flags", [["--channels-last"], ["--amp"], ["--channels-last", "--amp"]])
def test_training_modes_run_and_learn_the_same_task(flags, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "cbam", "--epochs", "1", *TINY, "--out", str(out), "--format", "csv", *flags]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["min_train_loss"]))


def test_train_step_applies_its_modes():
    from attnzoo.train.loop import TrainStep
    from attnzoo.train.models import build_model

    torch.manual_seed(0)
    model = build_model("cbam", {}, (), 0, 4)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), amp=True, channels_last=True)
    x, y = torch.randn(4, 3, 96, 96), torch.tensor([0.0, 1.0, 0.0, 1.0])
    before = [p.detach().clone() for p in model.parameters()]
    loss, logits = step(x, y)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32  # autocast on the CPU, loss in float32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_compile_without_a_compiler_is_refused_before_any_data(monkeypatch, capsys):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert run(["train", "cbam", "--epochs", "1", *TINY, "--compile"]) == 2
    err = capsys.readouterr().err
    assert "needs a C++ compiler" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------- issue 31


def test_a_one_image_last_batch_joins_the_one_before_for_a_pooled_bn_block(tmp_path, capsys):
    """Issue 31, item 3: ms-cam batch-normalises pooled descriptors, which one image cannot feed; a train size
    of batch x k + 1 ended in a traceback. The last image joins the batch before it, said once."""
    from attnzoo.train.data import batch_bounds

    batch, k = 8, 2
    bounds = batch_bounds(batch * k + 1, batch, merge_single=True)
    assert bounds == [(0, batch), (batch, batch * k + 1)]  # every image kept, no batch of one
    assert batch_bounds(batch * k + 1, batch) [-1] == (batch * k, batch * k + 1)  # evaluation keeps its batches
    assert batch_bounds(batch * k + 2, batch, merge_single=True)[-1] == (batch * k, batch * k + 2)

    out = tmp_path / "mscam"
    args = ["train", "ms-cam", "--epochs", "1", "--train-size", str(batch * k + 1), "--test-size", str(batch + 1),
            "--batch-size", str(batch), "--dataset", "synthetic", "--device", "cpu", "--threads", "1",
            "--out", str(out), "--format", "csv"]
    assert run(args) == 0
    captured = capsys.readouterr()
    assert captured.err.count("last batch of 1 image") == 1 and "Traceback" not in captured.err
    assert [int(r["epoch"]) for r in read_metrics(out)] == [1]
    state = torch.load(out / "checkpoints" / "epoch-001.pt", weights_only=True)
    assert state["history"][0]["train_images"] == batch * k + 1


def test_a_run_folder_holding_another_run_is_refused_and_overwrite_replaces_it(tmp_path, capsys):
    """Issue 31, item 4: 'train se --out DIR' into a folder holding a cbam run silently replaced its metrics
    and left its later checkpoint for a --resume to trip on."""
    out = tmp_path / "run"
    stale = out / "checkpoints" / "epoch-007.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older run's checkpoint")
    (out / "metrics.csv").write_text("epoch,train_loss\n1,0.5\n")
    (out / "notes.txt").write_text("the user's own file")
    args = ["train", "se", "--epochs", "1", *TINY, "--out", str(out), "--format", "csv"]
    assert run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run already" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert (out / "metrics.csv").read_text() == "epoch,train_loss\n1,0.5\n" and stale.exists()

    assert run([*args, "--overwrite"]) == 0
    assert "--overwrite: removed the run" in capsys.readouterr().err
    assert not stale.exists() and (out / "checkpoints" / "epoch-001.pt").is_file()
    assert [r["epoch"] for r in read_metrics(out)] == ["1"]
    assert (out / "notes.txt").read_text() == "the user's own file"  # only the run's own files go
    assert run([*args, "--overwrite", "--resume"]) == 2


def test_a_failed_run_of_a_comparison_is_named_and_exits_1(tmp_path, capsys, monkeypatch):
    """Issue 31, item 3: a run that failed inside 'train --compare' was printed as '(None s)', shown as a block
    with 0 seeds and blank cells, and the command exited 0."""
    import attnzoo.train.loop as loop

    real_train = loop.train

    def failing(cfg, *args, **kwargs):
        if cfg.block == "se":
            raise ValueError("planted failure of se's training")
        return real_train(cfg, *args, **kwargs)

    monkeypatch.setattr(loop, "train", failing)
    out = tmp_path / "cmp"
    args = ["train", "--compare", "cnn,se", "--epochs", "1", "--train-size", "16", "--test-size", "8",
            "--batch-size", "8", "--dataset", "synthetic", "--device", "cpu", "--out", str(out)]
    assert run(args) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "None s" not in captured.err
    assert "se seed 0: failed: ValueError: planted failure of se's training" in captured.err
    assert "1 of 2 runs failed (se)" in captured.err
    assert "0 (1 failed)" in captured.out  # the summary table names it
    rows = list(csv.DictReader(open(out / "runs.csv", encoding="utf-8")))
    assert [(r["block"], r["status"].split(":")[0]) for r in rows] == [("cnn", "ok"), ("se", "failed")]
