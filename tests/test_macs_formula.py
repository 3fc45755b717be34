"""Each card's stated MACs formula (the ``macs`` field, the same formula its docstring gives) against the
counter, at two shapes: a formula that drifts from the code fails here."""

from __future__ import annotations

import pytest

import attnzoo
from attnzoo.build import stated_macs
from attnzoo.profiling.flops import count_macs

SPECS = attnzoo.list_blocks()
# Two shapes that differ in every dimension, non-square, and that the blocks of the zoo take.
SHAPES = ((2, 64, 16, 16), (1, 128, 24, 40))


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_card_states_its_macs(spec):
    assert spec.macs, f"{spec.name}: give the card a 'macs' formula (the docstring's MACs per forward)"


@pytest.mark.parametrize("shape", SHAPES, ids=["2,64,16,16", "1,128,24,40"])
@pytest.mark.parametrize("spec", [s for s in SPECS if s.macs], ids=[s.name for s in SPECS if s.macs])
def test_stated_macs_equal_the_counter(spec, shape):
    module, inputs = attnzoo.create(spec.name, shape)
    module.eval()
    counted = count_macs(module, inputs)
    assert not counted.uncounted, f"{spec.name}: uncounted operators {counted.uncounted}"
    assert stated_macs(spec, shape) == counted.macs, f"{spec.name} at {shape}: formula '{spec.macs}'"
