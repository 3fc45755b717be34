"""Every card, every day: build, shape, finite output, gradients to every parameter, eval determinism,
and a property test over shapes. Parametrised over the registry, so a new card is tested when it lands."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnzoo
from attnzoo.build import create, output_shape, parse_shape
from attnzoo.errors import ShapeError

SPECS = attnzoo.list_blocks()
NAMES = [spec.name for spec in SPECS]
SMALL = (2, 64, 16, 16)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_card_builds_with_right_output(spec):
    torch.manual_seed(0)
    module, inputs = create(spec, SMALL)
    module.train()
    out = _first(module(*inputs))
    assert tuple(out.shape) == output_shape(spec, SMALL)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_gradients_reach_every_parameter(spec):
    torch.manual_seed(0)
    module, inputs = create(spec, SMALL)
    module.train()
    inputs = tuple(x.requires_grad_() for x in inputs)
    out = _first(module(*inputs))
    # A random projection, so that no symmetry (a mean after a norm, say) cancels a gradient to zero.
    (out * torch.randn_like(out)).sum().backward()
    missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    for name, p in module.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in inputs)
    assert any(x.grad.abs().sum() > 0 for x in inputs), "the output does not depend on the input"


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_eval_mode_is_deterministic(spec):
    module, inputs = create(spec, SMALL)
    module.eval()
    with torch.no_grad():
        first, second = _first(module(*inputs)), _first(module(*inputs))
    assert torch.equal(first, second)


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_card_is_documented(spec):
    assert spec.url.startswith("https://")
    assert spec.macs_exponent is not None, "state how MACs grow with N (macs_exponent)"
    module, _ = create(spec, SMALL)
    block = getattr(module, "block", module)  # the token adapter wraps BNC blocks
    doc = type(block).__doc__ or ""
    assert len(doc) > 80 and ("arxiv.org" in doc or "http" in doc), f"{type(block).__name__} needs a docstring with the paper"


shapes = st.tuples(st.integers(1, 2), st.sampled_from([1, 3, 8, 16, 24, 32, 48, 64]), st.integers(1, 20),
                   st.integers(1, 20))


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=shapes)
def test_any_shape_runs_or_is_refused_clearly(spec, shape):
    """Either the right output, or a ShapeError at build / ValueError in forward; never a crash inside torch."""
    try:
        module, inputs = create(spec, shape)
    except ShapeError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    module.eval()
    try:
        with torch.no_grad():
            out = _first(module(*inputs))
    except ValueError as exc:
        assert str(exc)
        return
    assert tuple(out.shape) == output_shape(spec, parse_shape(shape))
