"""Parity of the self-attention and local-attention blocks against independent implementations.

timm's XCA, ClassAttn, LocallyGroupedAttn and GlobalSubSampleAttn on copied weights; explicit dense
attention with a boolean mask (built here from each paper's definition) for the sliding-window, sparse,
neighbourhood and routing blocks; direct formulas for the Luong and Bahdanau scores.
"""

from __future__ import annotations

import math

import pytest
import torch

import attnzoo
from attnzoo.blocks.cait import ClassAttention
from attnzoo.blocks.local import NeighborhoodAttention, SlidingWindowAttention
from attnzoo.blocks.routing import RoutingAttention
from attnzoo.blocks.scores import AdditiveAttention, DotProductAttention, GeneralAttention, LocationAttention
from attnzoo.blocks.sparse import SparseAttention
from attnzoo.blocks.twins import GlobalSubSampledAttention, LocallyGroupedSelfAttention
from attnzoo.blocks.xcit import CrossCovarianceAttention
from attnzoo.errors import ShapeError

ATOL, RTOL = 1e-5, 1e-4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise(module: torch.nn.Module) -> None:
    """Non-trivial values everywhere (biases, temperatures, position tables), so parity covers them all."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)


def _dense_mha(x, qkv_w, qkv_b, proj_w, proj_b, heads, allowed, bias=None):
    """Plain multi-head attention over all N tokens, with keys outside ``allowed`` (N, N) excluded."""
    b, n, c = x.shape
    d = c // heads
    qkv = x @ qkv_w.T + (0 if qkv_b is None else qkv_b)
    q, k, v = qkv.view(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, heads, N, N)
    if bias is not None:
        scores = scores + bias
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return out @ proj_w.T + proj_b, weights


# ---------------------------------------------------------------------------------------------- timm parity

@pytest.mark.parametrize("n, heads, qkv_bias", [(50, 8, False), (7, 4, True), (1, 2, False)])
def test_xca_matches_timm(n, heads, qkv_bias):
    xcit = pytest.importorskip("timm.models.xcit")
    ours = CrossCovarianceAttention(32, num_heads=heads, qkv_bias=qkv_bias).eval()
    _randomise(ours)
    ref = xcit.XCA(32, num_heads=heads, qkv_bias=qkv_bias).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, n, 32)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    out, weights = ours(x, return_attention=True)
    assert weights.shape == (2, heads, 32 // heads, 32 // heads)
    torch.testing.assert_close(out, ref(x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_class_attention_matches_timm(qkv_bias):
    cait = pytest.importorskip("timm.models.cait")
    ref = cait.ClassAttn(32, num_heads=4, qkv_bias=qkv_bias).eval()
    _randomise(ref)
    # Reference form: the class token is the first input token.
    plain = ClassAttention(32, num_heads=4, qkv_bias=qkv_bias, class_token=False).eval()
    plain.load_state_dict(ref.state_dict())
    z = torch.randn(2, 13, 32)
    torch.testing.assert_close(plain(z), ref(z), atol=ATOL, rtol=RTOL)
    # Default form: the block prepends its own learned class token.
    held = ClassAttention(32, num_heads=4, qkv_bias=qkv_bias).eval()
    held.load_state_dict({**ref.state_dict(), "cls_token": held.cls_token.detach()})
    x = torch.randn(2, 12, 32)
    expected = ref(torch.cat([held.cls_token.expand(2, -1, -1), x], dim=1))
    out = held(x)
    assert out.shape == (2, 1, 32)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)


def test_class_attention_card_returns_class_token():
    module, (x,) = attnzoo.create("class-attention", (2, 16, 5, 6))
    assert module(x).shape == (2, 1, 16)


@pytest.mark.parametrize("height, width, ws", [(7, 7, 7), (9, 12, 7), (5, 3, 7), (8, 6, 4)])
def test_lsa_matches_timm(height, width, ws):
    twins = pytest.importorskip("timm.models.twins")
    ours = LocallyGroupedSelfAttention(32, height, width, num_heads=4, window_size=ws).eval()
    _randomise(ours)
    ref = twins.LocallyGroupedAttn(32, num_heads=4, ws=ws).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, height * width, 32)
    torch.testing.assert_close(ours(x), ref(x, (height, width)), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("height, width, ws", [(9, 12, 7), (5, 3, 4), (8, 8, 4)])
def test_lsa_masked_padding_is_windowed_dense_attention(height, width, ws):
    ours = LocallyGroupedSelfAttention(16, height, width, num_heads=2, window_size=ws, mask_padding=True).eval()
    _randomise(ours)
    rows, cols = torch.arange(height).repeat_interleave(width), torch.arange(width).repeat(height)
    window = (rows // ws) * 100 + cols // ws  # window id of each pixel
    allowed = window[:, None] == window[None, :]
    x = torch.randn(2, height * width, 16)
    expected, _ = _dense_mha(x, ours.qkv.weight, ours.qkv.bias, ours.proj.weight, ours.proj.bias, 2, allowed)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("height, width, sr", [(8, 8, 4), (9, 10, 4), (5, 7, 1), (6, 5, 2)])
def test_gsa_matches_timm(height, width, sr):
    twins = pytest.importorskip("timm.models.twins")
    ours = GlobalSubSampledAttention(32, height, width, num_heads=4, sr_ratio=sr).eval()
    _randomise(ours)
    ref = twins.GlobalSubSampleAttn(32, num_heads=4, sr_ratio=sr).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, height * width, 32)
    torch.testing.assert_close(ours(x), ref(x, (height, width)), atol=ATOL, rtol=RTOL)


def test_twins_refuse_bad_sizes():
    with pytest.raises(ValueError, match="sub-sampling"):
        GlobalSubSampledAttention(16, 3, 8, num_heads=2, sr_ratio=4)
    lsa = LocallyGroupedSelfAttention(16, 4, 4, num_heads=2)
    with pytest.raises(ValueError, match="4 x 4"):
        lsa(torch.randn(1, 15, 16))
    with pytest.raises(ShapeError):
        attnzoo.create("gsa", (1, 16, 2, 9))


# ------------------------------------------------------------------------------- masked dense attention

@pytest.mark.parametrize("n, window", [(30, 6), (10, 48), (1, 2), (17, 4)])
def test_sliding_window_is_banded_dense_attention(n, window):
    ours = SlidingWindowAttention(16, num_heads=2, window=window).eval()
    _randomise(ours)
    idx = torch.arange(n)
    allowed = (idx[:, None] - idx[None, :]).abs() <= window // 2
    x = torch.randn(2, n, 16)
    expected, dense = _dense_mha(x, ours.qkv.weight, ours.qkv.bias, ours.proj.weight, ours.proj.bias, 2, allowed)
    out, weights = ours(x, return_attention=True)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)
    # window slot s of query i is key i - w/2 + s
    j = idx[:, None] - window // 2 + torch.arange(window + 1)
    ok = (j >= 0) & (j < n)
    torch.testing.assert_close(weights[..., ok], dense[..., idx[:, None].expand_as(j)[ok], j[ok]], atol=ATOL,
                               rtol=RTOL)


def _sparse_mask(n: int, stride: int, pattern: str, summary: int) -> torch.Tensor:
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    if pattern == "strided":  # Child et al. A1 (local) and A2 (strided), mirrored to be non-causal
        return ((i - j).abs() <= stride) | ((i - j) % stride == 0)
    return (i // stride == j // stride) | (j % stride >= stride - summary)  # fixed: block and summary columns


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("n, stride, summary", [(64, 8, 1), (23, 4, 2), (10, 1, 1), (9, 30, 3), (50, 7, 7)])
def test_sparse_is_masked_dense_attention(pattern, n, stride, summary):
    ours = SparseAttention(16, num_heads=2, stride=stride, pattern=pattern, summary=summary).eval()
    _randomise(ours)
    allowed = _sparse_mask(n, stride, pattern, summary)
    x = torch.randn(2, n, 16)
    expected, dense = _dense_mha(x, ours.qkv.weight, ours.qkv.bias, ours.proj.weight, ours.proj.bias, 2, allowed)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)
    out, weights = ours(x, return_attention=True)
    torch.testing.assert_close(weights, dense, atol=ATOL, rtol=RTOL)


def test_sparse_card_stride_is_sqrt_n():
    module, (x,) = attnzoo.create("sparse-attention", (1, 16, 7, 9))
    assert module.block.stride == 7 and module(x).shape == x.shape
    with pytest.raises(ValueError, match="pattern"):
        SparseAttention(16, pattern="dense")


def _neighbourhood(height: int, width: int, k: int):
    """Allowed (N, N) mask and the relative-position index of every pair, from NAT's definition."""
    def starts(size):
        return [min(max(p - k // 2, 0), size - k) for p in range(size)]
    sy, sx = starts(height), starts(width)
    n = height * width
    allowed = torch.zeros(n, n, dtype=torch.bool)
    rel = torch.zeros(n, n, 2, dtype=torch.long)
    for qy in range(height):
        for qx in range(width):
            for ky in range(height):
                for kx in range(width):
                    i, j = qy * width + qx, ky * width + kx
                    allowed[i, j] = sy[qy] <= ky < sy[qy] + k and sx[qx] <= kx < sx[qx] + k
                    rel[i, j] = torch.tensor([ky - qy + k - 1, kx - qx + k - 1])
    return allowed, rel


@pytest.mark.parametrize("height, width, k, rpb", [(7, 7, 7, True), (9, 11, 5, True), (6, 8, 3, False),
                                                    (4, 5, 1, True)])
def test_neighborhood_is_masked_dense_attention(height, width, k, rpb):
    ours = NeighborhoodAttention(16, height, width, num_heads=2, kernel_size=k, rel_pos_bias=rpb).eval()
    _randomise(ours)
    allowed, rel = _neighbourhood(height, width, k)
    assert (allowed.sum(-1) == k * k).all()  # NA: every query sees exactly k^2 keys
    bias = None
    if rpb:
        bias = ours.rpb[:, rel[..., 0].clamp(0, 2 * k - 2), rel[..., 1].clamp(0, 2 * k - 2)]  # (heads, N, N)
    x = torch.randn(2, height * width, 16)
    expected, _ = _dense_mha(x, ours.qkv.weight, ours.qkv.bias, ours.proj.weight, ours.proj.bias, 2, allowed,
                             bias)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)


def test_neighborhood_refuses_small_maps():
    with pytest.raises(ValueError, match="smaller than the 7 x 7"):
        NeighborhoodAttention(16, 6, 9, num_heads=2, kernel_size=7)
    with pytest.raises(ValueError, match="odd"):
        NeighborhoodAttention(16, 8, 8, num_heads=2, kernel_size=4)
    with pytest.raises(ShapeError, match="smaller than"):
        attnzoo.create("neighborhood-attention", (1, 16, 5, 12))


def _routed_mask(ours: RoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, N): query i sees the ceil(N/K) keys nearest (cosine) to the centroid nearest to q_i."""
    b, n, c = x.shape
    h, d, kc = ours.num_heads, ours.head_dim, ours.num_clusters
    w = -(-n // kc)
    q, k, _ = (x @ ours.qkv.weight.T).view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
    allowed = torch.zeros(b, h, n, n, dtype=torch.bool)
    for bi in range(b):
        for hi in range(h):
            mu = ours.centroids[hi]  # (K, d)
            cos_q = torch.nn.functional.cosine_similarity(q[bi, hi][:, None], mu[None], dim=-1)  # (N, K)
            cos_k = torch.nn.functional.cosine_similarity(k[bi, hi][:, None], mu[None], dim=-1)  # (N, K)
            for i in range(n):
                cluster = int(cos_q[i].argmax())
                allowed[bi, hi, i, cos_k[:, cluster].topk(w).indices] = True
    return allowed


@pytest.mark.parametrize("n, clusters", [(30, 5), (16, 4), (9, 1), (5, 8)])
def test_routing_is_masked_dense_attention(n, clusters):
    ours = RoutingAttention(16, num_heads=2, num_clusters=clusters).eval()
    _randomise(ours)
    x = torch.randn(2, n, 16)
    allowed = _routed_mask(ours, x)
    assert (allowed.sum(-1) == -(-n // clusters)).all()
    expected, dense = _dense_mha(x, ours.qkv.weight, None, ours.proj.weight, ours.proj.bias, 2, allowed)
    out, weights = ours(x, return_attention=True)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(weights, dense, atol=ATOL, rtol=RTOL)


def test_routing_one_cluster_is_full_attention():
    ours = RoutingAttention(16, num_heads=4, num_clusters=1).eval()
    x = torch.randn(2, 12, 16)
    expected, _ = _dense_mha(x, ours.qkv.weight, None, ours.proj.weight, ours.proj.bias, 4,
                             torch.ones(12, 12, dtype=torch.bool))
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)


def test_routing_centroids_move_only_in_training():
    module, (x,) = attnzoo.create("routing-attention", (2, 16, 6, 6))
    block = module.block
    assert block.num_clusters == 6
    module.eval()
    before = block.centroids.clone()
    first, second = module(x), module(x)
    assert torch.equal(first, second) and torch.equal(block.centroids, before) and block.aux_loss is None
    module.train()
    out = module(x)
    assert not torch.equal(block.centroids, before)
    torch.testing.assert_close(block.centroids.norm(dim=-1), torch.ones(8, 6))  # still on the unit sphere
    (out.sum() + block.aux_loss).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


# ------------------------------------------------------------------------------------------ score formulas

def test_dot_product_formula():
    x = torch.randn(2, 10, 8)
    expected = torch.softmax(x @ x.transpose(1, 2), dim=-1) @ x  # unscaled
    torch.testing.assert_close(DotProductAttention()(x), expected, atol=ATOL, rtol=RTOL)
    out, weights = DotProductAttention()(x, return_attention=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 10))


def test_general_formula():
    block = GeneralAttention(8)
    x = torch.randn(2, 10, 8)
    w_a = block.weight.weight  # score(h_t, h_s) = h_t^T W_a h_s
    scores = torch.einsum("bic,cd,bjd->bij", x, w_a, x)
    torch.testing.assert_close(block(x), torch.softmax(scores, -1) @ x, atol=ATOL, rtol=RTOL)


def test_additive_formula():
    block = AdditiveAttention(6, attn_dim=5)
    x = torch.randn(2, 7, 6)
    w, u, v = block.query.weight, block.key.weight, block.score.weight[0]
    scores = torch.empty(2, 7, 7)
    for b in range(2):
        for i in range(7):
            for j in range(7):
                scores[b, i, j] = v @ torch.tanh(w @ x[b, i] + u @ x[b, j])
    torch.testing.assert_close(block(x), torch.softmax(scores, -1) @ x, atol=ATOL, rtol=RTOL)


def test_location_formula():
    block = LocationAttention(6, num_tokens=9)
    x = torch.randn(2, 9, 6)
    a = torch.softmax(x @ block.weight.weight.T, dim=-1)  # a_t = softmax(W_a h_t), one score per position
    torch.testing.assert_close(block(x), a @ x, atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="built for 9"):
        block(torch.randn(2, 10, 6))
