"""DDP proven: two real processes (gloo on the CPU) end with identical weights, equal to one process taking
the same global batches; only rank 0 writes files; shards that do not divide evenly work."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

WORLD = 2
BLOCK = "cbam"
SEED = 1
TRAIN, TEST, BATCH, EPOCHS, LR = 21, 5, 8, 1, 1e-3  # 21 images: two shards of 11 (one image repeated), steps 8, 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, port: int, root: str) -> None:
    """One process of the run: what torchrun would start, calling attnzoo's training loop."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from attnzoo.train import TrainConfig, load_task, setup_processes, teardown_processes, train
    from attnzoo.train.models import build_model

    info = setup_processes("cpu")
    try:
        assert info.active and info.rank == rank and info.world_size == WORLD
        data = load_task("synthetic", None, TRAIN, TEST, SEED)
        model = build_model(BLOCK, {}, (), SEED, BATCH)
        cfg = TrainConfig(block=BLOCK, out=Path(root) / f"out-rank{rank}", epochs=EPOCHS, batch_size=BATCH, lr=LR,
                          seed=SEED, train_size=TRAIN, test_size=TEST, dataset="synthetic")
        summary = train(cfg, data, info, model=model)
        # Written by the test, outside the run folders: each rank's final weights and what it reported.
        torch.save({"params": {k: v.detach().clone() for k, v in model.named_parameters()},
                    "history": summary["history"]}, Path(root) / f"result-rank{rank}.pt")
    finally:
        teardown_processes(info)


def _single_process_reference() -> dict[str, torch.Tensor]:
    """One process, the same global batches: at each step rank r's batch is forwarded on its own (batch
    norm sees each rank's batch, as under DDP without SyncBatchNorm) and the loss is the mean over ranks."""
    from attnzoo.train import load_task
    from attnzoo.train.data import epoch_order
    from attnzoo.train.models import build_model

    torch.set_num_threads(1)  # as the ranks: the same kernels, so only the reduction order differs
    data = load_task("synthetic", None, TRAIN, TEST, SEED)
    model = build_model(BLOCK, {}, (), SEED, BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for epoch in range(1, EPOCHS + 1):
        order = epoch_order(TRAIN, SEED, epoch)  # the data order both runs are given
        padded = torch.cat([order, order[: WORLD - TRAIN % WORLD]])  # DistributedSampler: wrap to a multiple
        shards = [padded[r::WORLD] for r in range(WORLD)]
        assert len(padded) == 22 and [len(s) for s in shards] == [11, 11]
        model.train()
        for start in range(0, len(shards[0]), BATCH):
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for part in shards:
                x, y = data.train.batch(part[start:start + BATCH])
                loss = loss + F.binary_cross_entropy_with_logits(model(x), y) / WORLD
            loss.backward()
            optimizer.step()
    return {k: v.detach() for k, v in model.named_parameters()}


@pytest.mark.slow
def test_two_processes_train_like_one_on_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_rank, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="spawn")
    results = [torch.load(tmp_path / f"result-rank{r}.pt", weights_only=True) for r in range(WORLD)]

    # Both ranks end with the same weights, bit for bit (DDP averages the gradients before each step) ...
    for name, value in results[0]["params"].items():
        assert torch.equal(value, results[1]["params"][name]), name
    # ... and they are those of one process taking the same global batches.
    threads = torch.get_num_threads()
    try:
        reference = _single_process_reference()
    finally:
        torch.set_num_threads(threads)
    initial = _initial_params()
    moved = max(float((reference[k] - initial[k]).abs().max()) for k in reference)
    assert moved > 5e-4  # training moved the weights far more than the tolerance below
    for name, value in reference.items():
        torch.testing.assert_close(results[0]["params"][name], value, rtol=0, atol=2e-5, msg=name)

    # Only rank 0 writes files; its checkpoint holds the weights the ranks ended with.
    assert not (tmp_path / "out-rank1").exists()
    run0 = tmp_path / "out-rank0"
    for name in ("metrics.csv", "loss.png", "accuracy.png", "attention.png", "checkpoints/epoch-001.pt"):
        assert (run0 / name).is_file(), name
    state = torch.load(run0 / "checkpoints" / "epoch-001.pt", weights_only=True)
    for name, value in results[0]["params"].items():
        assert torch.equal(state["model"][name], value), name

    # Uneven data: 21 training images make two shards of 11 (one repeated, as DistributedSampler does);
    # 5 test images are split 3 + 2 and summed over the ranks; both ranks report the same metrics.
    for rank_result in results:
        history = rank_result["history"]
        assert [row["train_images"] for row in history] == [22]
    for a, b in zip(results[0]["history"], results[1]["history"]):
        assert all(a[k] == b[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")), (a, b)


def _initial_params() -> dict[str, torch.Tensor]:
    from attnzoo.train.models import build_model

    return {k: v.detach() for k, v in build_model(BLOCK, {}, (), SEED, BATCH).named_parameters()}
