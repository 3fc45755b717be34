"""The linear-cost token mixers and axial attention against the papers' formulas written out here (dense,
quadratic-cost forms), against External-Attention-pytorch where it has the block (AFT, axial attention) on
copied weights, and the approximations (Linformer, Performer, Nystromformer) against exact softmax attention.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.blocks.axial import AxialAttention
from attnzoo.blocks.linear import (AFTSimple, EfficientAttention, LinearAttention, LinformerAttention,
                                   NystromAttention, PerformerAttention, iterative_pinv)
from attnzoo.errors import ShapeError

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def lin(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def split(t: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """(B, N, C) -> heads tensors (B, N, C / heads): head i owns channels [i d, (i + 1) d)."""
    return list(t.chunk(heads, dim=-1))


def softmax_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v, the N x N map formed explicitly; ``mask`` (Nq, Nk) True where allowed."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def exact_mha(q_layer, k_layer, v_layer, out_layer, x, heads):
    """Exact multi-head softmax attention with the given projections."""
    q, k, v = (split(lin(x, layer), heads) for layer in (q_layer, k_layer, v_layer))
    out = torch.cat([softmax_attention(qh, kh, vh) for qh, kh, vh in zip(q, k, v)], dim=-1)
    return lin(out, out_layer)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# ---------------------------------------------------------------- Linformer


def linformer_reference(m: LinformerAttention, x: torch.Tensor) -> torch.Tensor:
    """Wang et al.: head_i = softmax(Q_i (E K_i)^T / sqrt(d)) (F V_i), E = proj_k^T, F = proj_v^T."""
    keys = m.proj_k.T @ lin(x, m.to_k)  # (B, k, C)
    values = m.proj_v.T @ lin(x, m.to_v)
    heads = [softmax_attention(qh, kh, vh) for qh, kh, vh in
             zip(split(lin(x, m.to_q), m.num_heads), split(keys, m.num_heads), split(values, m.num_heads))]
    return lin(torch.cat(heads, dim=-1), m.to_out)


def test_linformer_matches_the_paper():
    m = LinformerAttention(32, seq_len=20, k=8, num_heads=4).eval()
    x = torch.randn(2, 20, 32)
    torch.testing.assert_close(m(x), linformer_reference(m, x), atol=ATOL, rtol=0)


def test_linformer_weights_are_over_k_projected_keys():
    m = LinformerAttention(32, seq_len=20, k=8, num_heads=4).eval()
    out, weights = m(torch.randn(2, 20, 32), return_attention=True)
    assert weights.shape == (2, 4, 20, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 20))


@pytest.mark.parametrize("copies", [1, 2, 3], ids=["k=N", "k=2N", "k=3N"])
def test_linformer_with_identity_projections_is_exact_attention(copies):
    """k >= N with E = F = [I I ... I]: each key-value pair repeated, which leaves softmax attention unchanged."""
    n = 16
    m = LinformerAttention(32, seq_len=n, k=copies * n, num_heads=4).eval()
    with torch.no_grad():
        m.proj_k.copy_(torch.eye(n).repeat(1, copies))
        m.proj_v.copy_(torch.eye(n).repeat(1, copies))
    x = torch.randn(2, n, 32)
    exact = exact_mha(m.to_q, m.to_k, m.to_v, m.to_out, x, 4)
    torch.testing.assert_close(m(x), exact, atol=ATOL, rtol=0)


def test_linformer_approaches_attention_as_projections_approach_identity():
    n = 16
    m = LinformerAttention(32, seq_len=n, k=n, num_heads=4).eval()
    x = torch.randn(2, n, 32)
    noise_k, noise_v = torch.randn(n, n), torch.randn(n, n)
    errors = []
    with torch.no_grad():
        exact = exact_mha(m.to_q, m.to_k, m.to_v, m.to_out, x, 4)
        for eps in (0.3, 0.1, 0.03, 0.01, 0.001):
            m.proj_k.copy_(torch.eye(n) + eps * noise_k)
            m.proj_v.copy_(torch.eye(n) + eps * noise_v)
            errors.append(rel_err(m(x), exact))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 5e-3, errors


def test_linformer_refuses_another_length():
    m = LinformerAttention(32, seq_len=20)
    with pytest.raises(ValueError, match="seq_len"):
        m(torch.randn(1, 21, 32))


# ---------------------------------------------------------------- Performer


def favor_reference(m: PerformerAttention, x: torch.Tensor) -> torch.Tensor:
    """Choromanski et al. lemma 1 in its quadratic form, float64: A = phi(Q) phi(K)^T, out = D^-1 A V with
    phi(u) = exp(W u - |u|^2 / 2) / sqrt(m), u = q / d^(1/4) (no stabiliser: it cancels)."""
    x = x.double()
    w = m.projection.double()
    d = m.head_dim

    def phi(u):
        u = u / d ** 0.25
        return torch.exp(u @ w.T - (u ** 2).sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])

    heads = []
    for qh, kh, vh in zip(*(split(lin(x, layer.double()), m.num_heads) for layer in (m.to_q, m.to_k, m.to_v))):
        a = phi(qh) @ phi(kh).transpose(-2, -1)  # (B, N, N)
        heads.append(a @ vh / a.sum(-1, keepdim=True))
    m.float()
    return lin(torch.cat(heads, dim=-1), m.to_out.double()).float()


def test_performer_matches_favor_plus():
    m = PerformerAttention(32, num_heads=4, num_features=64).eval()
    x = torch.randn(2, 24, 32)
    expected = favor_reference(m, x)
    m.float()
    torch.testing.assert_close(m(x), expected, atol=1e-4, rtol=1e-4)


def test_performer_features_are_orthogonal_seeded_buffers():
    d = 8
    m = PerformerAttention(64, num_heads=8, num_features=20, seed=3)
    w = m.projection
    assert w.shape == (20, d) and "projection" in dict(m.named_buffers())
    assert not any(name == "projection" for name, _ in m.named_parameters())
    for start in range(0, 20, d):  # rows orthogonal within each block of d
        block = w[start:start + d]
        gram = block @ block.T
        torch.testing.assert_close(gram - torch.diag(torch.diagonal(gram)), torch.zeros_like(gram), atol=1e-5, rtol=0)
    norms = w.norm(dim=1)
    assert norms.std() > 0.1  # Gaussian (chi-distributed) norms, not all sqrt(d)
    torch.testing.assert_close(PerformerAttention(64, num_heads=8, num_features=20, seed=3).projection, w)
    assert not torch.allclose(PerformerAttention(64, num_heads=8, num_features=20, seed=4).projection, w)


def test_performer_approaches_softmax_attention_as_features_grow():
    base = PerformerAttention(32, num_heads=4, num_features=8).eval()
    x = torch.randn(2, 64, 32)
    weights = {k: v for k, v in base.state_dict().items() if k != "projection"}
    means = []
    with torch.no_grad():
        exact = exact_mha(base.to_q, base.to_k, base.to_v, base.to_out, x, 4)
        for features in (16, 64, 256, 1024, 4096, 16384):
            errors = []
            for seed in range(3):
                m = PerformerAttention(32, num_heads=4, num_features=features, seed=seed).eval()
                m.load_state_dict(weights, strict=False)
                errors.append(rel_err(m(x), exact))
            means.append(sum(errors) / len(errors))
    assert all(later < earlier for earlier, later in zip(means, means[1:])), means
    assert means[-1] < 0.03, means


# ---------------------------------------------------------------- Nystromformer


def newton_pinv(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Xiong et al.'s iteration with Z0 = A^T / (max column sum * max row sum), per matrix."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    col = a.abs().sum(-2).amax(-1)[..., None, None]
    row = a.abs().sum(-1).amax(-1)[..., None, None]
    z = a.transpose(-2, -1) / (col * row)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def segment_means(t: torch.Tensor, m: int) -> torch.Tensor:
    """(B, N, d) -> (B, m, d): mean of tokens [floor(i N / m), ceil((i + 1) N / m)) for landmark i."""
    n = t.shape[1]
    return torch.stack([t[:, (i * n) // m: -((-(i + 1) * n) // m)].mean(dim=1) for i in range(m)], dim=1)


def nystrom_reference(mod: NystromAttention, x: torch.Tensor) -> torch.Tensor:
    """Xiong et al.'s approximation per head, plus the depthwise convolution of V along the tokens."""
    m = min(mod.num_landmarks, x.shape[1])
    heads = []
    q_all, k_all, v_all = (split(lin(x, layer), mod.num_heads) for layer in (mod.to_q, mod.to_k, mod.to_v))
    for h, (q, k, v) in enumerate(zip(q_all, k_all, v_all)):
        scale = q.shape[-1] ** -0.5
        q_l, k_l = segment_means(q, m), segment_means(k, m)
        f = torch.softmax(q @ k_l.transpose(-2, -1) * scale, dim=-1)
        a = torch.softmax(q_l @ k_l.transpose(-2, -1) * scale, dim=-1)
        b = torch.softmax(q_l @ k.transpose(-2, -1) * scale, dim=-1)
        out = f @ newton_pinv(a, mod.pinv_iterations) @ (b @ v)
        if mod.res_conv is not None:
            taps = mod.res_conv.weight[h, 0, :, 0]
            half = taps.numel() // 2
            padded = F.pad(v, (0, 0, half, half))
            out = out + sum(taps[t] * padded[:, t:t + v.shape[1]] for t in range(taps.numel()))
        heads.append(out)
    return lin(torch.cat(heads, dim=-1), mod.to_out)


@pytest.mark.parametrize("n, landmarks", [(24, 8), (20, 6), (5, 8)], ids=["divisible", "uneven", "N<m"])
def test_nystromformer_matches_the_paper(n, landmarks):
    mod = NystromAttention(32, num_heads=4, num_landmarks=landmarks, residual_kernel=5).eval()
    x = torch.randn(2, n, 32)
    torch.testing.assert_close(mod(x), nystrom_reference(mod, x), atol=ATOL, rtol=1e-4)


def test_iterative_pinv_converges_to_the_pseudo_inverse():
    a = torch.softmax(torch.randn(3, 16, 16), dim=-1).double()
    torch.testing.assert_close(iterative_pinv(a, 25), torch.linalg.pinv(a), atol=1e-6, rtol=1e-6)
    # per matrix: scaling one matrix of the batch does not change the others' result
    b = a.clone()
    b[0] *= 10
    torch.testing.assert_close(iterative_pinv(b, 6)[1:], iterative_pinv(a, 6)[1:])


def test_nystromformer_approaches_softmax_attention_as_landmarks_grow():
    n = 64
    x = torch.randn(2, n, 32)
    base = NystromAttention(32, num_heads=4, num_landmarks=2, residual=False).eval()
    errors = []
    with torch.no_grad():
        exact = exact_mha(base.to_q, base.to_k, base.to_v, base.to_out, x, 4)
        for landmarks in (2, 4, 8, 16, 32, 64):  # the default 6 pseudo-inverse iterations
            mod = NystromAttention(32, num_heads=4, num_landmarks=landmarks, residual=False).eval()
            mod.load_state_dict(base.state_dict())
            errors.append(rel_err(mod(x), exact))
        # one landmark per token: exact attention once the pseudo-inverse has converged
        mod = NystromAttention(32, num_heads=4, num_landmarks=n, pinv_iterations=20, residual=False).eval()
        mod.load_state_dict(base.state_dict())
        converged = rel_err(mod(x), exact)
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.03, errors
    assert converged < 1e-3, converged


# ---------------------------------------------------------------- Efficient attention (Shen et al.)


def test_efficient_attention_equals_its_dot_product_form():
    """rho_q(Q) (rho_k(K)^T V) computed as (rho_q(Q) rho_k(K)^T) V, the paper's equivalence argument."""
    mod = EfficientAttention(32, key_channels=16, value_channels=24, num_heads=4).eval()
    x = torch.randn(2, 30, 32)
    heads = []
    for q, k, v in zip(*(split(lin(x, layer), 4) for layer in (mod.queries, mod.keys, mod.values))):
        attention = torch.softmax(q, dim=-1) @ torch.softmax(k, dim=1).transpose(-2, -1)  # (B, N, N)
        heads.append(attention @ v)
    expected = lin(torch.cat(heads, dim=-1), mod.reprojection) + x
    torch.testing.assert_close(mod(x), expected, atol=ATOL, rtol=0)


def test_efficient_attention_refuses_indivisible_channels():
    with pytest.raises(ValueError, match="num_heads"):
        EfficientAttention(32, key_channels=12, num_heads=8)


# ---------------------------------------------------------------- Linear attention (Katharopoulos et al.)


def test_linear_attention_equals_its_quadratic_form():
    mod = LinearAttention(32, num_heads=4).eval()
    x = torch.randn(2, 30, 32)
    heads = []
    for q, k, v in zip(*(split(lin(x, layer), 4) for layer in (mod.to_q, mod.to_k, mod.to_v))):
        sim = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)  # (B, N, N), phi = elu + 1
        heads.append(sim @ v / (sim.sum(-1, keepdim=True) + mod.eps))
    expected = lin(torch.cat(heads, dim=-1), mod.to_out)
    torch.testing.assert_close(mod(x), expected, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- AFT-simple


def test_aft_simple_matches_the_paper():
    mod = AFTSimple(16).eval()
    x = torch.randn(2, 12, 16)
    q, k, v = lin(x, mod.to_q), lin(x, mod.to_k), lin(x, mod.to_v)
    weights = torch.exp(k) / torch.exp(k).sum(dim=1, keepdim=True)  # softmax over positions, per channel
    expected = torch.stack([torch.sigmoid(q[:, t]) * (weights * v).sum(dim=1) for t in range(12)], dim=1)
    torch.testing.assert_close(mod(x), expected, atol=ATOL, rtol=0)


def test_aft_simple_matches_eap_on_copied_weights():
    from fightingcv_attention.attention.AFT import AFT_FULL
    ref = AFT_FULL(16, n=12, simple=True).eval()
    mod = AFTSimple(16).eval()
    with torch.no_grad():
        for ours, theirs in ((mod.to_q, ref.fc_q), (mod.to_k, ref.fc_k), (mod.to_v, ref.fc_v)):
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(torch.randn_like(theirs.bias))
            theirs.bias.copy_(ours.bias)
    x = torch.randn(3, 12, 16)
    torch.testing.assert_close(mod(x), ref(x), atol=ATOL, rtol=0)


def test_aft_simple_is_stable_for_large_keys():
    mod = AFTSimple(8).eval()
    with torch.no_grad():
        mod.to_k.weight.mul_(1e3)
    out = mod(torch.randn(1, 10, 8))
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- Axial attention


def axis_reference(att, x, mask, heads):
    """Dense multi-head attention over all N tokens, restricted by ``mask`` (same row or same column)."""
    k_w, v_w = att.to_kv.weight.chunk(2, dim=0)
    q = split(x @ att.to_q.weight.T, heads)
    k, v = split(x @ k_w.T, heads), split(x @ v_w.T, heads)
    return lin(torch.cat([softmax_attention(a, b, c, mask) for a, b, c in zip(q, k, v)], dim=-1), att.to_out)


@pytest.mark.parametrize("sum_axes", [False, True], ids=["rows-then-columns", "sum"])
def test_axial_attention_is_masked_dense_attention(sum_axes):
    h, w = 3, 5
    mod = AxialAttention(16, height=h, width=w, num_heads=4, sum_axes=sum_axes).eval()
    x = torch.randn(2, h * w, 16)
    pos = torch.arange(h * w)
    same_row = (pos[:, None] // w) == (pos[None, :] // w)
    same_col = (pos[:, None] % w) == (pos[None, :] % w)
    rows = axis_reference(mod.row_attention, x, same_row, 4)
    if sum_axes:
        expected = rows + axis_reference(mod.column_attention, x, same_col, 4)
    else:
        expected = axis_reference(mod.column_attention, rows, same_col, 4)
    torch.testing.assert_close(mod(x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("sum_axes", [False, True], ids=["sequential", "sum"])
def test_axial_attention_matches_lucidrains_on_copied_weights(sum_axes):
    """EAP's copy of lucidrains' AxialAttention on (B, H, W, C) attends along H first; given the transposed map
    (B, W, H, C) its first attention runs along our rows, so the maps are transposed in and out."""
    from fightingcv_attention.attention.Axial_attention import AxialAttention as RefAxial
    h, w = 4, 6
    ref = RefAxial(16, num_dimensions=2, heads=4, dim_index=-1, sum_axial_out=sum_axes).eval()
    mod = AxialAttention(16, height=h, width=w, num_heads=4, sum_axes=sum_axes).eval()
    with torch.no_grad():
        for ours, theirs in ((mod.row_attention, ref.axial_attentions[0].fn),
                             (mod.column_attention, ref.axial_attentions[1].fn)):
            ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, h, w, 16)
    expected = ref(x.transpose(1, 2)).transpose(1, 2).reshape(2, h * w, 16)
    torch.testing.assert_close(mod(x.reshape(2, h * w, 16)), expected, atol=ATOL, rtol=0)


def test_axial_attention_refuses_another_map():
    with pytest.raises(ValueError, match="3 x 5"):
        AxialAttention(16, height=3, width=5, num_heads=4)(torch.randn(1, 16, 16))


# ---------------------------------------------------------------- cards


def test_cards_build_on_feature_maps_and_refuse_clearly():
    for name in ("linformer", "performer", "nystromformer", "efficient-attention", "linear-attention",
                 "aft-simple", "axial-attention"):
        module, (x,) = attnzoo.create(name, (1, 16, 5, 7))
        assert module(x).shape == x.shape, name
    with pytest.raises(ShapeError, match="num_heads"):
        attnzoo.create("performer", (1, 12, 4, 4))
