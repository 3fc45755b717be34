"""The white-patch classification task of the first article, with any registry block as the attention layer.

``data``: image sources (STL10 binaries, a folder of images, synthetic images of a chosen difficulty) and the
per-index patch draw; ``zoo``: comparisons of many blocks and seeds, one campaign unit a run;
``models``: ConvPart + block + head; ``loop``: training, checkpoints, DDP; ``viz``: curves and attention maps.
Shares the registry and ``build_module`` with the rest of attnzoo, and nothing else.
"""

from __future__ import annotations

from attnzoo.train.data import TaskData, load_task, resolve_dataset
from attnzoo.train.loop import TrainConfig, setup_processes, teardown_processes, train
from attnzoo.train.models import NO_BLOCK, build_model
from attnzoo.train_results import ARTICLE

__all__ = ["ARTICLE", "NO_BLOCK", "TaskData", "TrainConfig", "build_model", "load_task", "resolve_dataset",
           "setup_processes", "teardown_processes", "train"]
