"""Training images per second: attnzoo's white-patch network against the first article's, side by side.

The article's side is its code path written out here: its ConvPart, its 4-head MultiHeadAttention
(d_model 32, d_k = d_v = 8, no attention dropout as its ScaledDotProductAttention defaults to 0.0, output
dropout 0.1, residual, LayerNorm eps 1e-6) on the
bare ``reshape(B, -1, C)`` of the feature map, and its batches built image by image in numpy (scale,
transpose, ``np.random.seed(i + 10)`` per image, a white patch, ``torch.FloatTensor``), its hand-written
binary cross-entropy and Adam (lr 1e-4). attnzoo's side is ``attnzoo train mha``'s network, batches and
step (``attnzoo.train``) with ``--set num_heads=4`` (the article's network has 4 heads; the card's default of
8 is shown too), eager and with each of its flags (--channels-last, --compile, --amp). Both read the
same images (synthetic, 96x96 RGB, as uint8 arrays) at the same batch size; every round times ``--steps``
training steps of each candidate in turn, and the figure is the median over rounds of the per-round ratio.

    python benchmarks/train_throughput.py [--batch-size 32] [--steps 10] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import itertools

import common  # noqa: F401  (puts the checkout on sys.path)
from common import parser, print_header, print_table, ratio, side_by_side, write_json

TARGET = 2.0  # attnzoo's best flags against the article, with mha


def article_side(images_hwc, batch_size: int):
    """A training step of the article's network and data path; returns the step function."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Attention(nn.Module):  # softmax(q k^T / sqrt(d_k)) v; its dropout defaults to 0.0 and is left so
        def __init__(self, d_k: float):
            super().__init__()
            self.scale = d_k ** 0.5

        def forward(self, q, k, v):
            weights = F.softmax(torch.matmul(q / self.scale, k.transpose(2, 3)), dim=-1)
            return torch.matmul(weights, v), weights

    class ArticleMHA(nn.Module):
        def __init__(self, heads=4, d_model=32, d_k=8, d_v=8):
            super().__init__()
            self.heads, self.d_k, self.d_v = heads, d_k, d_v
            self.w_qs = nn.Linear(d_model, heads * d_k, bias=False)
            self.w_ks = nn.Linear(d_model, heads * d_k, bias=False)
            self.w_vs = nn.Linear(d_model, heads * d_v, bias=False)
            self.fc = nn.Linear(heads * d_v, d_model, bias=False)
            self.attention = Attention(d_k)
            self.dropout = nn.Dropout(0.1)
            self.layer_norm = nn.LayerNorm(d_model, eps=1e-6)

        def forward(self, x):
            b, n, _ = x.shape
            q = self.w_qs(x).view(b, n, self.heads, self.d_k).transpose(1, 2)
            k = self.w_ks(x).view(b, n, self.heads, self.d_k).transpose(1, 2)
            v = self.w_vs(x).view(b, n, self.heads, self.d_v).transpose(1, 2)
            out, weights = self.attention(q, k, v)
            out = self.dropout(self.fc(out.transpose(1, 2).contiguous().view(b, n, -1)))
            return self.layer_norm(out + x), weights

    class ArticleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1a, self.c2a, self.c3 = (nn.Conv2d(3, 32, 5, padding=2), nn.Conv2d(32, 32, 5, padding=2),
                                           nn.Conv2d(32, 32, 5, padding=2))
            self.bn1a, self.bn2a = nn.BatchNorm2d(32), nn.BatchNorm2d(32)
            self.attn1 = ArticleMHA()
            self.final = nn.Linear(32, 1)

        def forward(self, x):
            z = F.max_pool2d(self.bn1a(F.leaky_relu(self.c1a(x))), 2)
            z = self.c3(F.max_pool2d(self.bn2a(F.leaky_relu(self.c2a(z))), 2))
            q, _ = self.attn1(torch.reshape(z, (z.size(0), -1, z.size(1))))
            z = torch.reshape(q, z.shape).mean(3).mean(2)
            return torch.sigmoid(self.final(z))[:, 0]

    def get_batch(size: int, offset: int):
        xs, labels = [], []
        for i in range(size):
            x = (np.array(images_hwc[(offset + i) % len(images_hwc)]) - 128.0) / 128.0
            x = x.transpose(2, 0, 1)
            np.random.seed(i + 10)
            corrupt = np.random.randint(2)
            if corrupt:
                row, col = np.random.randint(96 - 16), np.random.randint(96 - 16)
                x[:, row:row + 16, col:col + 16] = 1
            xs.append(x)
            labels.append(corrupt)
        return np.array(xs), np.array(labels)

    torch.manual_seed(0)
    net = ArticleNet()
    optim = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()
    steps = itertools.count()

    def step() -> None:
        optim.zero_grad()
        x, y = get_batch(batch_size, next(steps) * batch_size)
        x, y = torch.FloatTensor(x), torch.FloatTensor(y)
        p = net(x)
        loss = -torch.mean(y * torch.log(p + 1e-8) + (1 - y) * torch.log(1 - p + 1e-8))
        loss.backward()
        optim.step()

    return step


def attnzoo_side(images_chw, batch_size: int, compile_: bool = False, amp: bool = False,
                 channels_last: bool = False, heads: int = 4):
    """A training step of ``attnzoo train mha --set num_heads=HEADS`` with the given flags."""
    import torch

    from attnzoo.train.data import PatchDataset, epoch_order
    from attnzoo.train.loop import TrainStep
    from attnzoo.train.models import build_model

    model = build_model("mha", {"num_heads": heads}, (), 0, batch_size)
    data = PatchDataset(images_chw, torch.arange(len(images_chw)), seed=0)
    train_step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-4), compile_=compile_, amp=amp,
                           channels_last=channels_last)
    epochs = itertools.count(1)
    batches = iter(())

    def step() -> None:
        nonlocal batches
        batch = next(batches, None)
        if batch is None:
            batches = data.batches(batch_size, epoch_order(len(data), 0, next(epochs)))
            batch = next(batches)
        train_step(*batch)

    return step


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="training steps per round and candidate")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--flags", default="channels_last,compile,amp,channels_last+amp,compile+channels_last",
                   help="attnzoo flag sets to try besides eager, comma-separated, '+' joins flags")
    args = p.parse_args(argv)

    import torch

    from attnzoo.train.data import synthetic_images

    info = print_header("train_throughput: attnzoo train mha against the first article's network")
    images = synthetic_images(args.images, seed=0)  # (N, 3, 96, 96) uint8
    images_hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    # The same network as the article's (4 heads); the card's default of 8 heads shown beside it.
    candidates = {"article": article_side(images_hwc, args.batch_size),
                  "attnzoo eager": attnzoo_side(images, args.batch_size),
                  "attnzoo eager, 8 heads": attnzoo_side(images, args.batch_size, heads=8)}
    for flags in filter(None, args.flags.split(",")):
        chosen = set(flags.split("+"))
        unknown = chosen - {"compile", "amp", "channels_last"}
        if unknown:
            raise SystemExit(f"unknown flags {sorted(unknown)}")
        candidates[f"attnzoo {flags}"] = attnzoo_side(images, args.batch_size, compile_="compile" in chosen,
                                                      amp="amp" in chosen, channels_last="channels_last" in chosen)
    fns = {name: (lambda s=s: [s() for _ in range(args.steps)]) for name, s in candidates.items()}
    times = side_by_side(fns, "cpu", rounds=args.rounds, warmup=1)
    rows = []
    for name in candidates:
        ms_per_step = times[name]["median_ms"] / args.steps
        rows.append({"candidate": name, "ms_per_step": round(ms_per_step, 2),
                     "img_s": round(args.batch_size / (ms_per_step / 1e3), 1),
                     "vs_article": round(ratio(times, "article", name), 3)})
    print_table(rows, title=f"batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds")
    best = max((r for r in rows if r["candidate"] != "article"), key=lambda r: r["vs_article"])
    eager = next(r for r in rows if r["candidate"] == "attnzoo eager")
    summary = {"eager_vs_article": eager["vs_article"], "best": best["candidate"],
               "best_vs_article": best["vs_article"], "target": TARGET, "ok": best["vs_article"] >= TARGET,
               "threads": torch.get_num_threads()}
    print_table([summary], title="summary (x the article's images per second)")
    payload = {"machine": info, "batch_size": args.batch_size, "rows": rows, "summary": summary}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
