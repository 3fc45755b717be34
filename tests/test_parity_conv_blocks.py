"""Convolutional attention blocks against independent implementations (timm, torchvision) on copied weights,
against the papers' formulas written out here, and the papers' defaults (parameter counts from formulas)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SelectiveKernel as TimmSelectiveKernel
from torchvision.ops import DeformConv2d, deform_conv2d

import attnzoo
from attnzoo.blocks.aff import AFF, IAFF, MSCAM
from attnzoo.blocks.attention_gate import AttentionGate
from attnzoo.blocks.bam import BAM
from attnzoo.blocks.bilinear_attention import BilinearAttention
from attnzoo.blocks.deformable import DeformableConv2d
from attnzoo.blocks.gct import GCT
from attnzoo.blocks.residual_attention import ResidualAttentionModule
from attnzoo.blocks.rga import RGAChannel, RGASpatial
from attnzoo.blocks.selective_kernel import SelectiveKernel
from attnzoo.errors import ShapeError

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise(module: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval-mode formulas are really tested."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module


def bn(x: torch.Tensor, m: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Eval-mode batch norm over dimension 1, written out."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps) * m.weight.view(shape) \
        + m.bias.view(shape)


def conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    out = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


# --- selective kernel: timm ------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,groups", [(64, 32), (48, 16)])
@pytest.mark.parametrize("train", [True, False])
def test_sk_matches_timm_selective_kernel(channels, groups, train):
    ours = randomise(SelectiveKernel(channels))
    assert ours.groups == groups and ours.attn_channels == 32  # gcd(C, 32); d = max(C / 16, L = 32)
    ref = TimmSelectiveKernel(channels, channels, kernel_size=[3, 5], groups=groups, rd_channels=32,
                              keep_3x3=True, split_input=False)
    mapping = {}
    for i in range(2):
        mapping[f"paths.{i}.conv.weight"] = f"paths.{i}.0.weight"
        for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapping[f"paths.{i}.bn.{key}"] = f"paths.{i}.1.{key}"
    for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapping[f"attn.bn.{key}"] = f"bn.{key}"
    mapping["attn.fc_reduce.weight"] = "fc_reduce.weight"
    mapping["attn.fc_select.weight"] = "fc_select.weight"
    state = ours.state_dict()
    ref.load_state_dict({k: state[v] for k, v in mapping.items()})
    ours.train(train)
    ref.train(train)
    x = torch.randn(2, channels, 9, 7)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-4)


def test_sk_paper_defaults_and_parameter_count():
    c, g, d, m = 64, 32, 32, 2
    sk = SelectiveKernel(c)
    assert (sk.num_paths, sk.groups, sk.attn_channels) == (m, g, d)
    assert [p[0].dilation for p in sk.paths] == [(1, 1), (2, 2)]  # 3x3 and 5x5 as dilated 3x3
    expected = m * (9 * c * c // g + 2 * c) + c * d + 2 * d + d * m * c
    assert n_params(sk) == expected
    assert SelectiveKernel(512).attn_channels == 32 and SelectiveKernel(1024).attn_channels == 64
    _, attn = sk.eval()(torch.randn(2, c, 5, 5), return_attention=True)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, c, 1, 1))  # softmax over the paths


# --- deformable convolution: torchvision ------------------------------------------------------------------

def test_deformable_zero_offsets_is_plain_conv():
    block = DeformableConv2d(8)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(block.weight)
        conv.bias.copy_(block.bias)
    x = torch.randn(2, 8, 7, 5)
    torch.testing.assert_close(block(x), conv(x), atol=ATOL, rtol=1e-4)
    _, offset, mask = block(x, return_offsets=True)
    assert offset.shape == (2, 18, 7, 5) and not offset.any() and mask is None


@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_matches_torchvision_with_nonzero_offsets(modulated):
    block = DeformableConv2d(6, modulated=modulated)
    with torch.no_grad():
        block.offset_conv.weight.normal_(0, 0.3)
        block.offset_conv.bias.normal_(0, 0.5)
        if modulated:
            block.mask_conv.weight.normal_(0, 0.3)
            block.mask_conv.bias.normal_(0, 0.5)
    x = torch.randn(2, 6, 6, 9)
    offset = block.offset_conv(x)
    mask = torch.sigmoid(block.mask_conv(x)) if modulated else None
    ref = DeformConv2d(6, 6, 3, padding=1)
    with torch.no_grad():
        ref.weight.copy_(block.weight)
        ref.bias.copy_(block.bias)
    out = block(x)
    assert offset.abs().min() > 0
    torch.testing.assert_close(out, ref(x, offset, mask), atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(out, deform_conv2d(x, offset, block.weight, block.bias, padding=1, mask=mask),
                               atol=ATOL, rtol=1e-4)


def test_deformable_constant_offset_is_conv_of_bilinearly_shifted_input():
    """A constant (dy, dx) on every tap samples x at (h + dy, w + dx): a conv of the shifted, zero-padded map."""
    c, h, w, dy, dx = 4, 6, 7, 0.5, -1.25
    block = DeformableConv2d(c, modulated=True)
    with torch.no_grad():
        block.offset_conv.bias.copy_(torch.tensor([dy, dx] * 9))
        block.mask_conv.bias.fill_(0.7)
    x = torch.randn(2, c, h, w)
    # Sample the padded grid (rows -1..h, columns -1..w) at the shifted positions, zeros outside the map.
    rows = torch.arange(-1, h + 1, dtype=torch.float32) + dy
    cols = torch.arange(-1, w + 1, dtype=torch.float32) + dx
    gy, gx = torch.meshgrid(rows / (h - 1) * 2 - 1, cols / (w - 1) * 2 - 1, indexing="ij")
    grid = torch.stack([gx, gy], -1).expand(2, -1, -1, -1)
    shifted = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    scale = torch.sigmoid(torch.tensor(0.7))
    expected = scale * F.conv2d(shifted, block.weight) + block.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=1e-4)


def test_deformable_defaults_and_refusals():
    c = 16
    v1, v2 = DeformableConv2d(c), DeformableConv2d(c, modulated=True)
    assert n_params(v1) == c * c * 9 + c + (c * 9 * 18 + 18)
    assert n_params(v2) == n_params(v1) + c * 9 * 9 + 9
    assert not v1.offset_conv.weight.any() and not v2.mask_conv.weight.any()
    with pytest.raises(ValueError, match="odd"):
        DeformableConv2d(c, kernel_size=4)
    with pytest.raises(ValueError, match="expected input"):
        v1(torch.randn(1, c + 1, 4, 4))


# --- GCT: the paper's formula ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,after_relu", [("l2", False), ("l1", False), ("l1", True)])
def test_gct_matches_formula(mode, after_relu):
    c, eps = 12, 1e-5
    block = GCT(c, mode=mode, after_relu=after_relu)
    assert block.epsilon == eps
    with torch.no_grad():
        block.alpha.uniform_(0.5, 1.5)
        block.gamma.normal_()
        block.beta.normal_()
    x = torch.randn(2, c, 5, 3)
    if after_relu:
        x = x.relu()
    alpha, gamma, beta = (p.view(1, c) for p in (block.alpha, block.gamma, block.beta))
    if mode == "l2":
        s = alpha * torch.sqrt((x ** 2).sum((2, 3)) + eps)  # (B, C)
        s_hat = gamma * s / torch.sqrt((s ** 2).mean(1, keepdim=True) + eps)
    else:
        s = alpha * x.abs().sum((2, 3))
        s_hat = gamma * s / (s.abs().mean(1, keepdim=True) + eps)
    expected = x * (1 + torch.tanh(s_hat + beta))[:, :, None, None]
    torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=1e-4)


def test_gct_defaults():
    block = GCT(10)
    assert n_params(block) == 30
    assert block.alpha.eq(1).all() and block.gamma.eq(0).all() and block.beta.eq(0).all()
    x = torch.randn(2, 10, 4, 4)
    torch.testing.assert_close(block(x), x)  # gamma = 0: the identity at initialisation
    with pytest.raises(ValueError, match="unknown GCT mode"):
        GCT(10, mode="linf")


# --- MS-CAM, AFF, iAFF: the official formulas -------------------------------------------------------------

def _branch(x: torch.Tensor, seq: nn.Sequential) -> torch.Tensor:
    """pw conv, BN, ReLU, pw conv, BN, after a global average pool when the branch starts with one."""
    layers = list(seq)
    if isinstance(layers[0], nn.AdaptiveAvgPool2d):
        x = x.mean((2, 3), keepdim=True)
        layers = layers[1:]
    conv1, bn1, _, conv2, bn2 = layers
    return bn(conv1x1(torch.relu(bn(conv1x1(x, conv1), bn1)), conv2), bn2)


def _mscam_weights(x, local, global_):
    return torch.sigmoid(_branch(x, local) + _branch(x, global_))


def test_mscam_matches_formula():
    block = randomise(MSCAM(32)).eval()
    x = torch.randn(2, 32, 6, 5)
    expected = x * _mscam_weights(x, block.local_att, block.global_att)
    torch.testing.assert_close(block(x), expected, atol=ATOL, rtol=1e-4)


def test_aff_matches_formula():
    block = randomise(AFF(32)).eval()
    x, y = torch.randn(2, 32, 6, 5), torch.randn(2, 32, 6, 5)
    w = _mscam_weights(x + y, block.local_att, block.global_att)
    torch.testing.assert_close(block(x, y), 2 * x * w + 2 * y * (1 - w), atol=ATOL, rtol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        block(x, y[:, :, :3])


@pytest.mark.parametrize("reuse", [False, True])
def test_iaff_matches_formula(reuse):
    block = randomise(IAFF(32, reuse_global_att=reuse)).eval()
    assert (block.global_att2 is None) == reuse
    x, y = torch.randn(2, 32, 6, 5), torch.randn(2, 32, 6, 5)
    w1 = _mscam_weights(x + y, block.local_att, block.global_att)
    z = x * w1 + y * (1 - w1)
    w2 = _mscam_weights(z, block.local_att2, block.global_att if reuse else block.global_att2)
    torch.testing.assert_close(block(x, y), x * w2 + y * (1 - w2), atol=ATOL, rtol=1e-4)


def test_aff_family_defaults():
    c, h = 64, 16  # r = 4
    bottleneck = (c * h + h) + 2 * h + (h * c + c) + 2 * c
    assert n_params(MSCAM(c)) == n_params(AFF(c)) == 2 * bottleneck
    assert n_params(IAFF(c)) == 4 * bottleneck
    assert n_params(IAFF(c, reuse_global_att=True)) == 3 * bottleneck
    with pytest.raises(ValueError, match="batch of at least 2"):
        MSCAM(c).train()(torch.randn(1, c, 4, 4))


# --- BAM: the paper's formula -----------------------------------------------------------------------------

@pytest.mark.parametrize("combine", ["add", "mul"])
def test_bam_matches_formula_on_non_square_maps(combine):
    c = 64
    block = randomise(BAM(c, combine=combine)).eval()
    x = torch.randn(2, c, 11, 6)
    fc0, bn0, _, fc1 = block.channel_gate
    mc = F.linear(torch.relu(bn(F.linear(x.mean((2, 3)), fc0.weight, fc0.bias), bn0)), fc1.weight, fc1.bias)
    s = block.spatial_gate
    z = torch.relu(bn(conv1x1(x, s[0]), s[1]))
    for conv, norm in ((s[3], s[4]), (s[6], s[7])):
        assert conv.dilation == (4, 4)
        z = torch.relu(bn(F.conv2d(z, conv.weight, conv.bias, padding=4, dilation=4), norm))
    ms = conv1x1(z, s[9])  # (B, 1, H, W)
    mc = mc[:, :, None, None]
    att = torch.sigmoid(mc + ms if combine == "add" else mc * ms)
    torch.testing.assert_close(block(x), x * (1 + att), atol=ATOL, rtol=1e-4)


def test_bam_defaults():
    c, h = 64, 4  # r = 16
    expected = (c * h + h) + 2 * h + (h * c + c)  # channel branch
    expected += (c * h + h) + 2 * h + 2 * (9 * h * h + h + 2 * h) + (h + 1)  # spatial branch
    assert n_params(BAM(c)) == expected
    with pytest.raises(ValueError, match="combine"):
        BAM(c, combine="max")


# --- bilinear attention: the reference's second-order features --------------------------------------------

def test_bilinear_attention_matches_formula():
    c = 64
    block = randomise(BilinearAttention(c)).eval()
    assert block.mid_channels == 4
    x = torch.randn(2, c, 5, 7)
    conv_r, bn_r, _ = block.reduce
    z = torch.relu(bn(conv1x1(x, conv_r), bn_r))  # (B, C', H, W)
    outer = torch.einsum("bihw,bjhw->bhwij", z, z)  # (B, H, W, C', C')
    second = torch.cat([torch.diagonal(outer, offset=-i, dim1=3, dim2=4) for i in range(4)], -1)
    second = second.permute(0, 3, 1, 2)  # (B, C'(C'+1)/2, H, W), the reference's diagonal-by-diagonal order
    assert second.shape[1] == 10

    def branch(t, seq):
        conv, norm, _ = seq
        return torch.relu(bn(conv1x1(t, conv), norm))

    att = torch.sigmoid(branch(second, block.outer) * branch(second.mean((2, 3), keepdim=True), block.inner))
    torch.testing.assert_close(block(x), x * att, atol=ATOL, rtol=1e-4)
    pairs, mid = 10, 4
    assert n_params(block) == (c * mid + 3 * mid) + 2 * (pairs * c + 3 * c)


# --- RGA: the reference's relation features, written with explicit indexing ------------------------------

def _embed(x, seq):
    conv, norm, _ = seq
    return torch.relu(bn(conv1x1(x, conv), norm))


def _score(y, seq):
    conv1, bn1, _, conv2, bn2 = seq
    return bn(conv1x1(torch.relu(bn(conv1x1(y, conv1), bn1)), conv2), bn2)


def test_rga_spatial_matches_formula():
    c, h, w = 16, 4, 6
    n = h * w
    block = randomise(RGASpatial(c, n)).eval()
    x = torch.randn(2, c, h, w)
    theta = _embed(x, block.theta).flatten(2)  # (B, C', N)
    phi = _embed(x, block.phi).flatten(2)
    r = torch.einsum("bci,bcj->bij", theta, phi)  # r[i, j] = theta_i . phi_j
    rel = torch.empty(2, 2 * n, n)
    for j in range(n):
        rel[:, :n, j] = r[:, j, :]  # outgoing relations of position j
        rel[:, n:, j] = r[:, :, j]  # incoming relations of position j
    rel = _embed(rel.view(2, 2 * n, h, w), block.gg)
    g = _embed(x, block.gx).mean(1, keepdim=True)
    att = torch.sigmoid(_score(torch.cat([g, rel], 1), block.score))
    torch.testing.assert_close(block(x), att * x, atol=ATOL, rtol=1e-4)
    # Any map with the same H*W; another N is refused.
    assert block(torch.randn(1, c, 6, 4)).shape == (1, c, 6, 4)
    with pytest.raises(ValueError, match="H\\*W = 24"):
        block(torch.randn(1, c, 5, 5))


def test_rga_channel_matches_formula():
    c, h, w = 16, 4, 6
    n = h * w
    block = randomise(RGAChannel(c, n)).eval()
    x = torch.randn(2, c, h, w)
    xc = x.flatten(2).transpose(1, 2).unsqueeze(-1)  # (B, N, C, 1)
    theta = _embed(xc, block.theta)[..., 0]  # (B, N', C)
    phi = _embed(xc, block.phi)[..., 0]
    r = torch.einsum("bkc,bkd->bcd", theta, phi)  # r[c, d]
    rel = torch.empty(2, 2 * c, c)
    for d in range(c):
        rel[:, :c, d] = r[:, d, :]
        rel[:, c:, d] = r[:, :, d]
    rel = _embed(rel.unsqueeze(-1), block.gg)  # (B, C/8, C, 1)
    g = _embed(xc, block.gx).mean(1, keepdim=True)  # (B, 1, C, 1)
    att = torch.sigmoid(_score(torch.cat([g, rel], 1), block.score)).view(2, c, 1, 1)
    torch.testing.assert_close(block(x), att * x, atol=ATOL, rtol=1e-4)


def test_rga_defaults():
    c, n = 64, 64  # ratios 8, 8, 8
    s = RGASpatial(c, n)
    embed = lambda i, o: i * o + 2 * o  # noqa: E731  conv (no bias) + BN
    score = lambda i: i * max(1, i // 8) + 2 * max(1, i // 8) + max(1, i // 8) + 2  # noqa: E731
    assert n_params(s) == 3 * embed(c, 8) + embed(2 * n, 8) + score(1 + 8)
    assert n_params(RGAChannel(c, n)) == 3 * embed(n, 8) + embed(2 * c, 8) + score(1 + 8)


# --- attention gate -----------------------------------------------------------------------------------------


def bilinear_matrix(size_in: int, size_out: int, align_corners: bool) -> torch.Tensor:
    """(size_out, size_in) weights of 1-D linear interpolation, as F.interpolate defines it: with
    align_corners=False the source of output i is (i + 0.5) * in / out - 0.5, clamped at 0; with True it is
    i * (in - 1) / (out - 1). Each output mixes source floor(s) and the next one by the fraction of s."""
    m = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        if align_corners:
            src = i * (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        else:
            src = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        i0 = min(int(src), size_in - 1)
        i1 = min(i0 + 1, size_in - 1)
        frac = src - i0
        m[i, i0] += 1 - frac
        m[i, i1] += frac
    return m.float()


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resizing of (B, C, h, w) to ``size``, separable: rows then columns."""
    rows = bilinear_matrix(x.shape[2], size[0], align_corners)
    cols = bilinear_matrix(x.shape[3], size[1], align_corners)
    return torch.einsum("ih,bchw,jw->bcij", rows, x, cols)


def test_bilinear_matrix_is_torchs_interpolation():
    """The hand-written resizing the parity tests below rely on, against torch on random maps."""
    x = torch.randn(2, 3, 5, 7)
    for size in ((9, 12), (3, 4), (5, 7), (11, 2)):
        for corners in (False, True):
            torch.testing.assert_close(resize(x, size, corners),
                                       F.interpolate(x, size=size, mode="bilinear", align_corners=corners))


def attention_gate_by_hand(gate: AttentionGate, x: torch.Tensor, g: torch.Tensor):
    """Oktay et al.'s additive gate written out: theta a 2x2 stride-2 conv of x (as 2x2 patches, no bias),
    phi a 1x1 conv of g resized bilinearly to theta's grid, alpha = sigmoid(psi(ReLU(theta + phi))) resized
    bilinearly to x's size, then W (1x1 conv and eval-mode BN) of alpha * x."""
    b, c, h, w = x.shape
    hs, ws = h // 2, w // 2  # a stride-2 2x2 conv drops an odd last row / column
    patches = x[:, :, : 2 * hs, : 2 * ws].reshape(b, c, hs, 2, ws, 2)
    theta = torch.einsum("bciujv,kcuv->bkij", patches, gate.theta.weight)
    phi = resize(conv1x1(g, gate.phi), (hs, ws), align_corners=False)
    small = torch.sigmoid(conv1x1(torch.relu(theta + phi), gate.psi))  # (B, 1, h/2, w/2)
    alpha = resize(small, (h, w), align_corners=False)
    return bn(conv1x1(alpha * x, gate.W[0]), gate.W[1]), alpha


@pytest.mark.parametrize("x_size, g_size", [((9, 12), (3, 5)), ((8, 6), (4, 3)), ((7, 7), (2, 2))])
def test_attention_gate_matches_the_gate_written_out(x_size, g_size):
    c = 16
    gate = randomise(AttentionGate(c, 2 * c)).eval()
    assert gate.inter_channels == c // 2 and gate.theta.stride == (2, 2) and gate.theta.bias is None
    x, g = torch.randn(2, c, *x_size), torch.randn(2, 2 * c, *g_size)
    with torch.no_grad():
        out, alpha = gate(x, g, return_attention=True)
        want_out, want_alpha = attention_gate_by_hand(gate, x, g)
    assert out.shape == x.shape and alpha.shape == (2, 1, *x_size)
    torch.testing.assert_close(alpha, want_alpha, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(out, want_out, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(gate(x, g), out)


def test_attention_gate_parameters_and_refusal():
    c = 16
    gate = AttentionGate(c, 2 * c)
    ci = c // 2
    assert n_params(gate) == c * ci * 4 + (2 * c * ci + ci) + (ci + 1) + (c * c + c + 2 * c)
    with pytest.raises(ValueError, match="smaller than the sub-sample"):
        gate(torch.randn(1, c, 1, 5), torch.randn(1, 2 * c, 1, 2))


def test_attention_gate_card_takes_two_inputs():
    module, inputs = attnzoo.create("attention-gate", (2, 8, 7, 10))
    assert [tuple(t.shape) for t in inputs] == [(2, 8, 7, 10), (2, 16, 3, 5)]
    assert module(*inputs).shape == (2, 8, 7, 10)


# --- residual attention ----------------------------------------------------------------------------------


def preact_unit_by_hand(unit, x: torch.Tensor) -> torch.Tensor:
    """Pre-activation bottleneck: x + conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(relu(bn(x))))))))) (eval BN)."""
    bn1, _, conv1, bn2, _, conv2, bn3, _, conv3 = unit.body
    z = F.conv2d(torch.relu(bn(x, bn1)), conv1.weight)
    z = F.conv2d(torch.relu(bn(z, bn2)), conv2.weight, padding=1)
    z = F.conv2d(torch.relu(bn(z, bn3)), conv3.weight)
    return x + z


def units_by_hand(units, x: torch.Tensor) -> torch.Tensor:
    for unit in units:
        x = preact_unit_by_hand(unit, x)
    return x


def residual_attention_by_hand(block: ResidualAttentionModule, x: torch.Tensor):
    """Wang et al.'s attention module written out, depth 3: pre units; trunk; the soft-mask hourglass:
    (3x3 max-pool stride 2 pad 1, a unit, a skip unit) twice, 3x3 max-pool, 2 units at the bottom; then up:
    bilinear (align_corners=True) to the level above's size, plus that level's skip, a unit; twice; bilinear to
    the input size; (BN, ReLU, 1x1) twice, sigmoid; output post((1 + M) * T)."""
    pool = lambda t: F.max_pool2d(t, 3, stride=2, padding=1)  # noqa: E731
    x = units_by_hand(block.pre, x)
    trunk = units_by_hand(block.trunk, x)
    level1 = units_by_hand(block.down[0], pool(x))  # 1/2
    skip1 = preact_unit_by_hand(block.skips[0], level1)
    level2 = units_by_hand(block.down[1], pool(level1))  # 1/4
    skip2 = preact_unit_by_hand(block.skips[1], level2)
    bottom = units_by_hand(block.bottom, pool(level2))  # 1/8
    up2 = units_by_hand(block.up[1], resize(bottom, skip2.shape[2:], True) + skip2)
    up1 = units_by_hand(block.up[0], resize(up2, skip1.shape[2:], True) + skip1)
    m = resize(up1, x.shape[2:], True)
    bn1, _, conv1, bn2, _, conv2 = block.mask_head
    m = F.conv2d(torch.relu(bn(m, bn1)), conv1.weight)
    mask = torch.sigmoid(F.conv2d(torch.relu(bn(m, bn2)), conv2.weight))
    return units_by_hand(block.post, (1 + mask) * trunk), mask


@pytest.mark.parametrize("shape", [(2, 8, 13, 10), (1, 8, 16, 16), (1, 4, 5, 9)])
def test_residual_attention_matches_the_hourglass_written_out(shape):
    block = randomise(ResidualAttentionModule(shape[1])).eval()
    assert len(block.down) == len(block.skips) == len(block.up) == 2 and len(block.bottom) == 2
    x = torch.randn(shape)
    with torch.no_grad():
        out, mask = block(x, return_attention=True)
        want_out, want_mask = residual_attention_by_hand(block, x)
    assert out.shape == mask.shape == shape
    assert (mask > 0).all() and (mask < 1).all()
    torch.testing.assert_close(mask, want_mask, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(out, want_out, atol=1e-4, rtol=1e-4)


def test_residual_attention_defaults_and_refusals():
    c = 16
    q = c // 4
    unit = 2 * c + c * q + 2 * q + 9 * q * q + 2 * q + q * c  # pre-activation bottleneck
    units = 1 + 2 + 1 + 2 * (1 + 1 + 1) + 2  # p + t + p, two levels of (down, skip, up), 2r at the bottom
    assert n_params(ResidualAttentionModule(c)) == units * unit + 2 * (2 * c + c * c)
    with pytest.raises(ValueError, match="at least 5"):
        ResidualAttentionModule(c)(torch.randn(1, c, 4, 8))
    with pytest.raises(ShapeError, match="at least 5"):
        attnzoo.create("residual-attention", (1, c, 8, 4))
    assert attnzoo.create("residual-attention", (1, c, 4, 4), depth=2)[0] is not None


# --- every card: build, run, gradients -----------------------------------------------------------------

NAMES = ["residual-attention", "attention-gate", "bam", "bilinear-attention", "rga-s", "rga-c", "sk", "aff",
         "iaff", "ms-cam", "gct", "deformable-conv"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 32, 7, 9), (2, 16, 8, 5)])
def test_card_runs_and_backward_reaches_every_parameter(name, shape):
    module, inputs = attnzoo.create(name, shape)
    module.train()
    out = module(*inputs)
    assert out.shape == shape and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    assert not missing
