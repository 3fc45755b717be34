"""Each card's stated growth (macs_exponent: MACs ~ N^k at fixed B and C) against the MAC counter."""

from __future__ import annotations

import math

import pytest

import attnzoo
from attnzoo.errors import ShapeError
from attnzoo.profiling.flops import count_macs

SPECS = [spec for spec in attnzoo.list_blocks() if spec.macs_exponent is not None]
#: How far the measured slope may sit from the card's exponent: 0.01 for a card whose MACs are a + b N^k
#: (the slope of the differences is then exactly k), more only where a second N-dependent term is still
#: comparable at 64 x 64 with few channels, each named (slopes measured: axial 1.38, criss-cross 1.46,
#: gsa 1.92, lsa 1.11, routing 1.43, sparse 1.45, swin 1.11, triplet 0.90).
TOLERANCE = 0.01
LOOSE = {
    "axial-attention": 0.15,  # N (H + W) C attention beside N C^2 projections
    "criss-cross": 0.06,  # N (H + W - 1) C attention beside N C^2 / 8 query and key convs
    "gsa": 0.1,  # N (N / sr^2) C attention beside N C^2 projections
    "routing-attention": 0.1,  # N^1.5 C within sqrt(N) clusters beside N C^2 projections
    "sparse-attention": 0.08,  # N^1.5 C strided attention beside N C^2 projections
    "lsa": 0.15,  # windows of 7: the map is padded to 21, 35, 70, not in proportion to 16, 32, 64
    "swin-window-attention": 0.15,  # the same padding to multiples of the window
    "triplet-attention": 0.12,  # k^2 C (H + W) convs on the C-H and C-W planes beside k^2 H W on H-W
}


def _channels(spec) -> int:
    """The fewest channels (8, 16, 32 or 64) the block takes: few channels make the growth in N show early.
    Blocks with many channel groups (EMA's 32, EPSANet's groups of 16 per branch) need 32 or 64."""
    for channels in (8, 16, 32):
        try:
            attnzoo.create(spec.name, (1, channels, 8, 8))
            return channels
        except ShapeError:
            pass
    return 64


def _macs(spec, side: int) -> int:
    module, inputs = attnzoo.create(spec.name, (1, _channels(spec), side, side))
    module.eval()
    count = count_macs(module, inputs)
    assert not count.uncounted, f"{spec.name}: uncounted operators {count.uncounted}"
    return count.macs


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_macs_grow_as_the_card_states(spec):
    # The local slope of the growth between three maps: lower-order terms (projections) fade as N grows, and
    # a term that does not depend on N (Nystromformer's pseudo-inverse of m x m landmarks) cancels in the
    # differences; for MACs a + b N^k the slope is exactly k. Cubic blocks (RGA-S) stop at 32 x 32.
    smaller, small, large = (8, 16, 32) if spec.macs_exponent >= 3 else (16, 32, 64)
    low, mid, high = (_macs(spec, side) for side in (smaller, small, large))
    if low == mid == high:
        slope = 0.0  # MACs that do not depend on N at all
    else:
        slope = math.log((high - mid) / (mid - low)) / math.log((large / small) ** 2)
    assert slope == pytest.approx(spec.macs_exponent, abs=LOOSE.get(spec.name, TOLERANCE)), (
        f"{spec.name}: MACs grow as N^{slope:.2f}, card says N^{spec.macs_exponent}")
