"""Data for the white-patch task: image sources, the per-index patch draw, and tensor batching.

Every source yields ``uint8`` images of shape ``(N, 3, 96, 96)`` (channels first). They stay ``uint8`` in
memory (27 KiB an image); a batch is gathered by indexing, scaled to ``(x - 128) / 128`` and given its
patches on tensors, with no Python loop over images.

The patch draw. The first article seeds NumPy with the image's position *inside its batch*
(``np.random.seed(i + 10)``), so every batch repeats the same labels and patch positions. attnzoo draws
from the image's *global* index (its position in the source) and the seed, through a counter-based hash
(splitmix64): the same index always gets the same label and position, whatever the batch size or order,
and different images get independent draws.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attnzoo.errors import ConfigError

IMAGE_SIZE = 96
PATCH_SIZE = 16
PATCH_VALUE = 1.0
STL10_IMAGE_BYTES = 3 * IMAGE_SIZE * IMAGE_SIZE
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
SYNTHETIC_CHUNK = 128  # images generated per seeded chunk, so image i does not depend on how many are asked

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


# --------------------------------------------------------------------------------------------- patches


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def patch_draws(indices: torch.Tensor | np.ndarray, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label, row and column of the patch for each global image index: ``(label, row, col)``, int64 tensors.

    The label is 0 or 1 with probability 1/2 each; row and column are uniform in ``[0, 96 - 16)`` (the
    article's ``np.random.randint(96 - 16)``). A pure function of ``(seed, index)``.
    """
    idx = np.asarray(torch.as_tensor(indices).cpu().numpy(), dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _splitmix64(_splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5851F42D4C957F2D)) ^ idx)
        draws = [_splitmix64(base ^ np.uint64(stream)) for stream in (1, 2, 3)]
    span = IMAGE_SIZE - PATCH_SIZE
    label = (draws[0] >> np.uint64(63)).astype(np.int64)
    row = ((draws[1] >> np.uint64(32)) % np.uint64(span)).astype(np.int64)
    col = ((draws[2] >> np.uint64(32)) % np.uint64(span)).astype(np.int64)
    return torch.from_numpy(label), torch.from_numpy(row), torch.from_numpy(col)


def scale_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, 96, 96) -> float32 (x - 128) / 128, as the article."""
    return (images.float() - 128.0) / 128.0


def insert_patches(x: torch.Tensor, label: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Set a 16x16 square to 1.0 in every channel of the images whose label is 1 (out of place, vectorised)."""
    size = x.shape[-1]
    device = x.device
    grid = torch.arange(size, device=device)
    row, col, label = row.to(device), col.to(device), label.to(device)
    in_rows = (grid >= row[:, None]) & (grid < row[:, None] + PATCH_SIZE)  # (B, H)
    in_cols = (grid >= col[:, None]) & (grid < col[:, None] + PATCH_SIZE)  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & label.bool()[:, None, None]  # (B, H, W)
    return x.masked_fill(mask[:, None], PATCH_VALUE)


# --------------------------------------------------------------------------------------------- batches


@dataclass
class PatchDataset:
    """uint8 images plus the global index of each in its source; batches come out scaled and patched."""

    images: torch.Tensor  # (N, 3, 96, 96) uint8
    indices: torch.Tensor  # (N,) int64: position in the source (the key of the patch draw)
    seed: int = 0

    def __post_init__(self) -> None:
        self.labels, self.rows, self.cols = patch_draws(self.indices, self.seed)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, positions: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Images at ``positions`` (indices into this dataset) as float (B, 3, 96, 96) with patches, and labels."""
        images = self.images.index_select(0, positions).to(device, non_blocking=True)
        x = insert_patches(scale_images(images), self.labels[positions], self.rows[positions], self.cols[positions])
        return x, self.labels[positions].to(device=device, dtype=torch.float32)

    def batches(self, batch_size: int, order: torch.Tensor | None = None, device: torch.device | str = "cpu",
                merge_single: bool = False):
        """Yield ``(x, y)`` over ``order`` (default: every image in turn) in batches of ``batch_size``; with
        ``merge_single`` a last batch of one image joins the one before (see :func:`batch_bounds`)."""
        order = torch.arange(len(self)) if order is None else order
        for start, end in batch_bounds(len(order), batch_size, merge_single):
            yield self.batch(order[start:end], device)


def batch_bounds(n: int, batch_size: int, merge_single: bool = False) -> list[tuple[int, int]]:
    """``(start, end)`` of each batch of ``n`` items. With ``merge_single``, a last batch of one item (n one
    more than a multiple of the batch) joins the batch before it, which then holds ``batch_size + 1``: a
    training step batch-normalises over the batch, and blocks that batch-normalise pooled descriptors (one
    value per channel and image) cannot take one image. Merging keeps every image in every epoch, where
    ``drop_last`` would leave one out."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if merge_single and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """DistributedSampler's split: pad by wrapping to a multiple of ``world_size``, then every world_size-th."""
    if world_size <= 1:
        return order
    total = -(-len(order) // world_size) * world_size
    padded = torch.cat([order, order[: total - len(order)]]) if total > len(order) else order
    return padded[rank::world_size]


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of epoch ``epoch``: a permutation drawn from (seed, epoch), the same on every rank."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


# --------------------------------------------------------------------------------------------- STL10


def stl10_dir(root: str | os.PathLike) -> Path | None:
    """The folder holding ``train_X.bin``: ``root/stl10_binary`` (torchvision's layout) or ``root`` itself."""
    root = Path(root).expanduser()
    for candidate in (root / "stl10_binary", root):
        if (candidate / "train_X.bin").is_file():
            return candidate
    return None


def load_stl10(root: str | os.PathLike, count: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first ``count`` images of an STL10 binary split, ``(N, 3, 96, 96)`` uint8, and its class labels.

    The official files store each image as 3 planes of 96x96 bytes in column-major order, so a plane read
    row-major is the image transposed: read as (N, 3, 96, 96), then swap the last two axes. Labels
    (``<split>_y.bin``, 1..10) are returned when the file is there; the white-patch task does not use them.
    """
    folder = stl10_dir(root)
    if folder is None:
        raise ConfigError(f"no STL10 binary files under '{root}' (expected stl10_binary/{split}_X.bin)")
    path = folder / f"{split}_X.bin"
    if not path.is_file():
        raise ConfigError(f"STL10 file not found: {path}")
    available = path.stat().st_size // STL10_IMAGE_BYTES
    if path.stat().st_size % STL10_IMAGE_BYTES:
        raise ConfigError(f"{path}: size {path.stat().st_size} is not a whole number of 96x96 RGB images")
    if count > available:
        raise ConfigError(f"{path} holds {available} images; {count} asked (lower --train-size/--test-size)")
    raw = np.fromfile(path, dtype=np.uint8, count=count * STL10_IMAGE_BYTES)
    images = torch.from_numpy(raw.reshape(count, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 1, 3, 2).copy())
    labels = None
    label_path = folder / f"{split}_y.bin"
    if label_path.is_file():
        labels = torch.from_numpy(np.fromfile(label_path, dtype=np.uint8, count=count).astype(np.int64))
    return images, labels


# --------------------------------------------------------------------------------------------- folder


def list_images(root: str | os.PathLike) -> list[Path]:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_image_folder(root: str | os.PathLike, count: int) -> torch.Tensor:
    """The first ``count`` images (sorted paths, recursive) resized (shorter side 96) and centre-cropped."""
    from PIL import Image

    paths = list_images(root)
    if len(paths) < count:
        raise ConfigError(f"'{root}' holds {len(paths)} images; {count} needed (lower --train-size/--test-size)")
    out = torch.empty((count, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for i, path in enumerate(paths[:count]):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                w, h = image.size
                scale = IMAGE_SIZE / min(w, h)
                size = (max(IMAGE_SIZE, round(w * scale)), max(IMAGE_SIZE, round(h * scale)))
                image = image.resize(size, Image.BILINEAR)
                left, top = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
                image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
                out[i] = torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())
        except OSError as exc:
            raise ConfigError(f"cannot read image {path}: {exc}") from None
    return out


# --------------------------------------------------------------------------------------------- synthetic


def _smooth_noise(n: int, channels: int, cells: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise on a cells x cells grid, upsampled bicubically to 96 x 96."""
    coarse = torch.randn(n, channels, cells, cells, generator=generator)
    return F.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False)


def _uniform(generator: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


def _synthetic_chunk(n: int, seed: int, chunk: int, level: float = 0.0) -> torch.Tensor:
    """``n`` images (at most SYNTHETIC_CHUNK) of chunk ``chunk``, all drawn from one generator, then hardened
    to ``level``."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + chunk) & 0x7FFFFFFFFFFFFFFF)
    size = IMAGE_SIZE
    y = torch.linspace(-1.0, 1.0, size).view(1, 1, size, 1)
    x = torch.linspace(-1.0, 1.0, size).view(1, 1, 1, size)

    # Background: a base colour, a linear gradient (sky, light falloff) and low-frequency colour variation.
    base = _uniform(g, n, 3, 1, 1, low=40.0, high=200.0)
    angle = _uniform(g, n, 1, 1, 1, high=2 * torch.pi)
    slope = _uniform(g, n, 3, 1, 1, low=-60.0, high=60.0)
    image = base + slope * (torch.cos(angle) * x + torch.sin(angle) * y)
    image = image + 25.0 * _smooth_noise(n, 3, 4, g)

    # Texture: oriented stripes (fabric, fences, grass) with a random frequency, and mid-frequency noise.
    theta = _uniform(g, n, 1, 1, 1, high=torch.pi)
    freq = _uniform(g, n, 1, 1, 1, low=4.0, high=30.0)
    phase = _uniform(g, n, 1, 1, 1, high=2 * torch.pi)
    stripes = torch.sin(freq * (torch.cos(theta) * x + torch.sin(theta) * y) + phase)
    image = image + _uniform(g, n, 1, 1, 1, high=30.0) * stripes * (_smooth_noise(n, 1, 3, g) > 0)
    image = image + _uniform(g, n, 1, 1, 1, low=4.0, high=22.0) * _smooth_noise(n, 1, 24, g)

    # Shapes: ellipses and rectangles with random colours, shading and soft or hard edges, painted in order.
    shapes = 5
    cy, cx = _uniform(g, n, shapes, 1, 1, low=-1.0, high=1.0), _uniform(g, n, shapes, 1, 1, low=-1.0, high=1.0)
    ry, rx = _uniform(g, n, shapes, 1, 1, low=0.08, high=0.6), _uniform(g, n, shapes, 1, 1, low=0.08, high=0.6)
    rot = _uniform(g, n, shapes, 1, 1, high=torch.pi)
    dy, dx = y - cy, x - cx  # (n, shapes, H, W)
    u = (torch.cos(rot) * dx + torch.sin(rot) * dy) / rx
    v = (-torch.sin(rot) * dx + torch.cos(rot) * dy) / ry
    is_rect = torch.rand(n, shapes, 1, 1, generator=g) < 0.4
    distance = torch.where(is_rect, torch.maximum(u.abs(), v.abs()), torch.sqrt(u * u + v * v))
    softness = _uniform(g, n, shapes, 1, 1, low=0.01, high=0.3)
    coverage = torch.sigmoid((1.0 - distance) / softness)  # (n, shapes, H, W)
    present = (torch.rand(n, shapes, 1, 1, generator=g) < 0.8).float()
    colour = _uniform(g, n, shapes, 3, 1, 1, low=0.0, high=255.0)
    shade = 1.0 + 0.3 * (u * _uniform(g, n, shapes, 1, 1, low=-1.0, high=1.0)).clamp(-1.5, 1.5)
    for k in range(shapes):  # a handful of layers, each vectorised over the images
        alpha = (coverage[:, k] * present[:, k]).unsqueeze(1)  # (n, 1, H, W)
        image = image * (1 - alpha) + alpha * colour[:, k] * shade[:, k].unsqueeze(1)

    # Bright regions, the distractors of the task: soft highlights, and on some images a saturated
    # near-white blob or bar (windows, sky, reflections) that a model must tell from the square patch.
    hy, hx = _uniform(g, n, 1, 1, 1, low=-1.0, high=1.0), _uniform(g, n, 1, 1, 1, low=-1.0, high=1.0)
    hr = _uniform(g, n, 1, 1, 1, low=0.05, high=0.35)
    glow = torch.exp(-((y - hy) ** 2 + (x - hx) ** 2) / (2 * hr * hr))
    image = image + _uniform(g, n, 1, 1, 1, high=160.0) * glow
    by, bx = _uniform(g, n, 1, 1, 1, low=-1.0, high=1.0), _uniform(g, n, 1, 1, 1, low=-1.0, high=1.0)
    bh, bw = _uniform(g, n, 1, 1, 1, low=0.04, high=0.4), _uniform(g, n, 1, 1, 1, low=0.04, high=0.4)
    bar = ((y - by).abs() < bh) & ((x - bx).abs() < bw) & (torch.rand(n, 1, 1, 1, generator=g) < 0.35)
    image = torch.where(bar, _uniform(g, n, 1, 1, 1, low=215.0, high=250.0), image)

    # Sensor noise, then quantise as a camera would.
    image = image + 3.0 * torch.randn(n, 3, size, size, generator=g)
    if level > 0:  # a second generator: at level 0 the images are exactly the easy setting's
        hard = torch.Generator().manual_seed((seed * 1_000_003 + chunk) ^ 0x2545F4914F6CDD1D)
        image = _harden(image, level, hard)
    return image.clamp(0, 255).round().to(torch.uint8)


def _harden(image: torch.Tensor, level: float, g: torch.Generator) -> torch.Tensor:
    """Make the white patch harder to see, as natural photos do, every part scaled by ``level``:

    - overexposure: on a share min(1, 0.4 level) of the images, a blown-out region (a sky band along one edge,
      or a blob) is driven past 255, so after clipping it is flat white. A patch that lands on it differs from
      it by one grey level (255 against the patch's 256, in the article's (x - 128) / 128 scale) and is all
      but invisible: such images raise the test loss as bright skies and white objects do on the article's
      STL10;
    - haze that lifts the background towards a bright grey (less contrast);
    - near-white rectangles, half of them squares of about the patch's size (distractors);
    - fine texture and sensor noise, before the clipping (the blown-out regions stay flat, as a camera's do).

    The distractors take the noise like the rest of the image: drawn flat after it, they were learnt so
    slowly that the cnn's test loss was still 0.5 after 11 of the article's 50 epochs at level 0.6.
    """
    n, _, size, _ = image.shape
    y = torch.linspace(-1.0, 1.0, size).view(1, 1, size, 1)
    x = torch.linspace(-1.0, 1.0, size).view(1, 1, 1, size)
    # Haze: each image drawn part of the way towards a bright grey.
    haze = _uniform(g, n, 1, 1, 1, high=min(0.6, 0.3 * level))
    image = image + haze * (230.0 - image)
    # Distractors: up to 4 an image, present with probability min(1, 0.4 level) each, 5-28 px a side (half of
    # them squares of about the patch's size), 215-250 in every channel: bright, never the patch's value.
    slots = 4
    iy = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)
    ix = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
    present = torch.rand(n, slots, 1, 1, generator=g) < min(1.0, 0.4 * level)
    square = torch.rand(n, slots, 1, 1, generator=g) < 0.5
    height = torch.where(square, _uniform(g, n, slots, 1, 1, low=12.0, high=20.0),
                         _uniform(g, n, slots, 1, 1, low=5.0, high=28.0)).round()
    width = torch.where(square, height, _uniform(g, n, slots, 1, 1, low=5.0, high=28.0).round())
    top = (_uniform(g, n, slots, 1, 1, high=1.0) * (size - height)).round()
    left = (_uniform(g, n, slots, 1, 1, high=1.0) * (size - width)).round()
    box = (iy >= top) & (iy < top + height) & (ix >= left) & (ix < left + width) & present  # (n, slots, H, W)
    value = _uniform(g, n, slots, 1, 1, low=215.0, high=250.0).round()
    for k in range(slots):
        image = torch.where(box[:, k:k + 1], value[:, k:k + 1], image)
    # Fine texture and sensor noise, over the distractors too (at least the easy images' 3 levels).
    image = image + 8.0 * level * _smooth_noise(n, 1, 48, g) + (3.0 + 3.0 * level) * torch.randn(n, 3, size, size, generator=g)
    # Overexposure: a band along an edge (its depth 10-45% of the image, a wavy border) or an ellipse
    # (radii 0.2-0.6 of the half-width), with a soft rim, then pushed far above white.
    exposed = torch.rand(n, 1, 1, 1, generator=g) < min(1.0, 0.4 * level)
    angle = _uniform(g, n, 1, 1, 1, high=2 * torch.pi)
    along = torch.cos(angle) * x + torch.sin(angle) * y  # in [-1.41, 1.41], the band's edge at 1 - depth
    wave = 0.08 * torch.sin(_uniform(g, n, 1, 1, 1, low=3.0, high=9.0) * (torch.cos(angle) * y - torch.sin(angle) * x)
                            + _uniform(g, n, 1, 1, 1, high=2 * torch.pi))
    depth = _uniform(g, n, 1, 1, 1, low=0.2, high=0.9)
    band = along + wave - (1.0 - depth)
    cy, cx = _uniform(g, n, 1, 1, 1, low=-0.7, high=0.7), _uniform(g, n, 1, 1, 1, low=-0.7, high=0.7)
    ry, rx = _uniform(g, n, 1, 1, 1, low=0.2, high=0.6), _uniform(g, n, 1, 1, 1, low=0.2, high=0.6)
    blob = 1.0 - torch.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    is_band = torch.rand(n, 1, 1, 1, generator=g) < 0.5
    inside = torch.where(is_band, band, blob * 0.3)  # > 0 inside; the blob's scale matched to the band's
    rim = _uniform(g, n, 1, 1, 1, low=0.01, high=0.06)
    image = image + exposed * torch.sigmoid(inside / rim) * 400.0
    return image


#: Named difficulties of the synthetic images: the ``level`` of :func:`_harden`. ``easy`` is the images
#: attnzoo generated before difficulties existed (the plain cnn reaches a minimum test loss of 0.010 on them
#: under the article's protocol, against its 0.054 on STL10); ``article`` (the default) is the level where
#: benchmarks/difficulty.py, under the article's protocol, put the cnn's minimum test loss within 1.5x of
#: 0.054 (README: 0.35 gave 0.074); ``hard`` doubles it.
DIFFICULTIES = {"easy": 0.0, "article": 0.35, "hard": 0.7}
DEFAULT_DIFFICULTY = "article"


def difficulty_level(name: str | float) -> float:
    """The level of a named difficulty; a number from 0 to 10 (or its text, as on the command line) is the
    level itself."""
    if isinstance(name, str) and name not in DIFFICULTIES:
        try:
            name = float(name)  # nan and inf fail the range check below
        except ValueError:
            pass
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        if not 0 <= name <= 10:
            raise ConfigError(f"a difficulty level must be between 0 and 10, got {name}")
        return float(name)
    if name not in DIFFICULTIES:
        raise ConfigError(f"unknown difficulty '{name}'; choose one of {', '.join(DIFFICULTIES)} or a level from 0 to 10")
    return DIFFICULTIES[name]


def synthetic_images(count: int, seed: int = 0, difficulty: str | float = "easy") -> torch.Tensor:
    """``count`` deterministic natural-looking 96x96 RGB images (uint8): gradients, textures, shapes, highlights,
    made harder by ``difficulty`` (a name of DIFFICULTIES or a level).

    Images are generated in seeded chunks of SYNTHETIC_CHUNK, so image ``i`` is the same whatever ``count``.
    """
    level = difficulty_level(difficulty)
    chunks = []
    for chunk in range(-(-count // SYNTHETIC_CHUNK)):
        n = min(SYNTHETIC_CHUNK, count - chunk * SYNTHETIC_CHUNK)
        chunks.append(_synthetic_chunk(SYNTHETIC_CHUNK, seed, chunk, level)[:n])
    if not chunks:
        return torch.empty((0, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    return torch.cat(chunks)


# --------------------------------------------------------------------------------------------- the task


DATASETS = ("auto", "stl10", "folder", "synthetic")
DEFAULT_STL10_ROOTS = ("stl10", "data", "~/.cache/attnzoo/stl10")


@dataclass
class TaskData:
    train: PatchDataset
    test: PatchDataset
    source: str  # what was loaded, in words
    dataset: str  # stl10 | folder | synthetic


def resolve_dataset(dataset: str, data_root: str | None) -> tuple[str, str | None, str | None]:
    """``(dataset, root, note)``: ``auto`` becomes stl10 when its files are found, else synthetic (with a note)."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset '{dataset}'; choose one of {', '.join(DATASETS)}")
    if dataset in ("stl10", "folder"):
        if not data_root:
            raise ConfigError(f"--dataset {dataset} needs --data-root DIR")
        if dataset == "stl10" and stl10_dir(data_root) is None:
            raise ConfigError(f"no STL10 binary files under '{data_root}' (expected stl10_binary/train_X.bin; "
                              "download them where a network is available)")
        if dataset == "folder" and not Path(data_root).expanduser().is_dir():
            raise ConfigError(f"image folder not found: {data_root}")
        return dataset, data_root, None
    if dataset == "synthetic":
        return "synthetic", None, None
    roots = (data_root,) if data_root else DEFAULT_STL10_ROOTS
    for root in roots:
        if stl10_dir(root) is not None:
            return "stl10", str(root), None
    where = data_root or ", ".join(DEFAULT_STL10_ROOTS)
    return "synthetic", None, f"no STL10 files found ({where}); using --dataset synthetic"


def load_task(dataset: str, data_root: str | None, train_size: int, test_size: int, seed: int,
              difficulty: str | float = DEFAULT_DIFFICULTY) -> TaskData:
    """The train images (source positions 0..train_size-1) and the test images after them, as the article.
    ``difficulty`` applies to synthetic images only."""
    if train_size < 1 or test_size < 1:
        raise ConfigError("--train-size and --test-size must be at least 1")
    total = train_size + test_size
    if dataset == "stl10":
        images, _ = load_stl10(data_root, total)
        source = f"STL10 train split at {data_root}"
    elif dataset == "folder":
        images = load_image_folder(data_root, total)
        source = f"images under {data_root}"
    elif dataset == "synthetic":
        images = synthetic_images(total, seed, difficulty)
        source = f"synthetic images (seed {seed}, difficulty {difficulty})"
    else:
        raise ConfigError(f"unknown dataset '{dataset}'")
    indices = torch.arange(total, dtype=torch.int64)
    train = PatchDataset(images[:train_size], indices[:train_size], seed)
    test = PatchDataset(images[train_size:], indices[train_size:], seed)
    return TaskData(train=train, test=test, source=source, dataset=dataset)
