"""Issue 10, second half: polarized self-attention, EPSANet PSA, A^2 double attention, CoT, gather-excite, split
attention, EMA, ELA and eSE against independent implementations on copied weights: timm layers, the
External-Attention-pytorch package (fightingcv_attention, bugs worked around as each test says), and, where no
package ships the authors' code (EMA, EPSANet, CoTNet's CUDA layer), their arithmetic written out here from the
official repositories."""

from __future__ import annotations

import importlib
import types

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvMlp, EffectiveSEModule, SplitAttn, create_conv2d
from timm.layers import GatherExcite as TimmGatherExcite

import attnzoo
from attnzoo.blocks.cot import ContextualTransformer
from attnzoo.blocks.double_attention import DoubleAttention
from attnzoo.blocks.effective_se import EffectiveSE
from attnzoo.blocks.ela import EfficientLocalAttention
from attnzoo.blocks.ema import EfficientMultiScaleAttention
from attnzoo.blocks.epsa import EPSA
from attnzoo.blocks.gather_excite import GatherExcite
from attnzoo.blocks.polarized import PolarizedSelfAttention
from attnzoo.blocks.split_attention import SplitAttention
from attnzoo.errors import ShapeError

ATOL = 1e-5
RTOL = 1e-4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise(module: nn.Module) -> nn.Module:
    """Non-trivial norm statistics and affine parameters (BatchNorm, GroupNorm, LayerNorm), so that the norms'
    parameters are really compared, and in eval mode the running statistics too."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module


def bn(x: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode BatchNorm over dimension 1, written out."""
    shape = (1, -1, 1, 1)
    return (x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps) * m.weight.view(shape) \
        + m.bias.view(shape)


def eap(name: str):
    """A module of External-Attention-pytorch (fightingcv-attention 1.0.0, installed --no-deps)."""
    return importlib.import_module(f"fightingcv_attention.attention.{name}")


# --- effective SE: timm EffectiveSEModule ----------------------------------------------------------------

def test_effective_se_matches_timm():
    ours = EffectiveSE(48)
    ref = EffectiveSEModule(48)
    ref.load_state_dict(ours.state_dict())  # fc.weight, fc.bias on both sides
    x = torch.randn(2, 48, 7, 11) * 3  # large enough that the hard sigmoid saturates somewhere
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    assert n_params(ours) == 48 * 48 + 48  # one FC, no reduction


def test_effective_se_gate_is_the_hard_sigmoid():
    ours = EffectiveSE(4)
    with torch.no_grad():
        ours.fc.weight.zero_()
        ours.fc.bias.copy_(torch.tensor([-4.0, 0.0, 1.5, 4.0]))
    out = ours(torch.ones(1, 4, 3, 3))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 0.5, 0.75, 1.0]))  # relu6(x + 3) / 6


# --- gather-excite: timm GatherExcite ----------------------------------------------------------------------
# timm 1.0.31's constructor unpacks its {device, dtype} dict with * (positionally) into ConvMlp and
# create_conv2d, so GatherExcite(channels) fails ("ConvMlp got multiple values for act_layer"), and so does every
# call with extra_params=True ("create_conv2d got multiple values for kernel_size"). The arguments that construct
# are use_mlp=False with extra_params=False. The reference is therefore timm's GatherExcite built that way, with
# the parametric gather and the MLP its constructor means to build installed by hand from timm's own layers
# (ConvMlp, create_conv2d, BatchNorm2d); the forward is timm's. One departure from timm is worked around: timm
# pads the global gather convolution by (k - 1) / 2 (create_conv2d's default), which makes the "global" gather
# (H-1) x (W-1) for even sizes and H x W for odd ones; the reference's global gather convolution is unpadded, as
# the paper's.

def test_timm_gather_excite_constructor_bug_is_as_documented():
    if timm.__version__ != "1.0.31":
        pytest.skip("the constructor bug is recorded for timm 1.0.31")
    with pytest.raises(TypeError, match="act_layer"):
        TimmGatherExcite(64)
    with pytest.raises(TypeError, match="kernel_size"):
        TimmGatherExcite(64, feat_size=(8, 8), extra_params=True, use_mlp=False)
    assert TimmGatherExcite(64, use_mlp=False) is not None  # the arguments that work


def _timm_gather_excite(ours: GatherExcite, channels: int, extent: int) -> nn.Module:
    ref = TimmGatherExcite(channels, extent=extent, use_mlp=False)
    gather = nn.Sequential()
    if extent == 0:
        gather.add_module("conv1", nn.Conv2d(channels, channels, ours.size, groups=channels, bias=False))
        gather.add_module("norm1", nn.BatchNorm2d(channels))
    else:
        steps = extent.bit_length() - 1
        for i in range(1, steps + 1):
            gather.add_module(f"conv{i}", create_conv2d(channels, channels, kernel_size=3, stride=2, depthwise=True))
            gather.add_module(f"norm{i}", nn.BatchNorm2d(channels))
            if i < steps:
                gather.add_module(f"act{i}", nn.ReLU(inplace=True))
    ref.gather = gather
    ref.mlp = ConvMlp(channels, ours.fc1.out_channels, act_layer=nn.ReLU)
    state = {f"gather.{k}": v for k, v in ours.gather.state_dict().items()}
    for fc in ("fc1", "fc2"):
        state.update({f"mlp.{fc}.{k}": v for k, v in getattr(ours, fc).state_dict().items()})
    ref.load_state_dict(state)
    return ref


@pytest.mark.parametrize("extent,shape", [(0, (2, 32, 9, 6)), (0, (2, 32, 8, 8)), (4, (2, 32, 13, 10)),
                                          (2, (2, 32, 7, 8))])
@pytest.mark.parametrize("train", [False, True])
def test_gather_excite_matches_timm(extent, shape, train):
    _, c, h, w = shape
    ours = randomise(GatherExcite(c, h, w, extent=extent))
    ref = _timm_gather_excite(ours, c, extent)
    ours.train(train)
    ref.train(train)
    x = torch.randn(shape)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)


def test_gather_excite_defaults_and_refusals():
    c, h, w = 64, 9, 6
    ge = GatherExcite(c, h, w).eval()
    assert ge.gather.conv1.kernel_size == (h, w) and ge.gather.conv1.padding == (0, 0)
    assert ge.gather(torch.randn(1, c, h, w)).shape == (1, c, 1, 1)  # the global gather is global
    assert ge.fc1.out_channels == c // 16
    assert n_params(ge) == c * h * w + 2 * c + (c * 4 + 4) + (4 * c + c)
    with pytest.raises(ValueError, match="built for 9x6"):
        ge(torch.randn(1, c, 6, 9))
    with pytest.raises(ValueError, match="extent"):
        GatherExcite(c, extent=3)
    with pytest.raises(ValueError, match="height and width"):
        GatherExcite(c)


# --- split attention: timm SplitAttn -----------------------------------------------------------------------

@pytest.mark.parametrize("radix,cardinality", [(2, 1), (2, 2), (4, 1), (1, 1)])
@pytest.mark.parametrize("train", [False, True])
def test_split_attention_matches_timm(radix, cardinality, train):
    c = 64
    ours = randomise(SplitAttention(c, radix=radix, cardinality=cardinality))
    # timm's rd_channels is the attention width per radix split; BatchNorm as ResNeSt builds it.
    ref = SplitAttn(c, radix=radix, groups=cardinality, rd_channels=ours.attn_channels // radix,
                    norm_layer=nn.BatchNorm2d)
    ref.load_state_dict(ours.state_dict())  # conv, bn0, fc1, bn1, fc2: the same names
    ours.train(train)
    ref.train(train)
    x = torch.randn(2, c, 9, 7)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)


def test_split_attention_defaults_and_refusals():
    sa = SplitAttention(256)
    assert (sa.radix, sa.cardinality, sa.attn_channels) == (2, 1, 128)  # max(C radix / 4, 32), as ResNeSt
    assert SplitAttention(64).attn_channels == 32
    c, d = 64, 32
    assert n_params(SplitAttention(c)) == 9 * 2 * c * c // 2 + 2 * 2 * c + (c * d + d) + 2 * d + (d * 2 * c + 2 * c)
    _, attn = SplitAttention(c).eval()(torch.randn(2, c, 5, 6), return_attention=True)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, c, 1, 1))  # softmax across the radix splits
    with pytest.raises(ShapeError, match="radix"):
        attnzoo.create("split-attention", (1, 63, 8, 8))


# --- ELA: timm EfficientLocalAttn --------------------------------------------------------------------------

def test_ela_matches_timm():
    from timm.layers.coord_attn import EfficientLocalAttn

    ours = randomise(EfficientLocalAttention(48))
    ref = EfficientLocalAttn(48)
    ref.load_state_dict(ours.state_dict())  # conv_h, conv_w, norm_h, norm_w
    x = torch.randn(2, 48, 13, 9)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    assert n_params(ours) == 2 * 48 * 7 + 4 * 48  # two depth-wise 1-D convs, two GroupNorms


# --- EMA: the official code's arithmetic (YOLOonMe/EMA-attention-module), written out ----------------------

def ema_reference(x: torch.Tensor, m: EfficientMultiScaleAttention, groups: int) -> torch.Tensor:
    """The official EMA forward, step by step, with functional calls on the block's weights."""
    b, c, h, w = x.shape
    cg = c // groups
    gx = x.reshape(b * groups, cg, h, w)
    x_h = F.adaptive_avg_pool2d(gx, (h, 1))  # pool_h: (bg, cg, h, 1)
    x_w = F.adaptive_avg_pool2d(gx, (1, w)).permute(0, 1, 3, 2)  # pool_w, permuted: (bg, cg, w, 1)
    hw = F.conv2d(torch.cat([x_h, x_w], dim=2), m.conv1x1.weight, m.conv1x1.bias)
    a_h, a_w = hw[:, :, :h], hw[:, :, h:]
    x1 = F.group_norm(gx * a_h.sigmoid() * a_w.permute(0, 1, 3, 2).sigmoid(), cg, m.gn.weight, m.gn.bias, m.gn.eps)
    x2 = F.conv2d(gx, m.conv3x3.weight, m.conv3x3.bias, padding=1)
    x11 = F.softmax(F.adaptive_avg_pool2d(x1, 1).reshape(b * groups, -1, 1).permute(0, 2, 1), dim=-1)
    x12 = x2.reshape(b * groups, cg, -1)
    x21 = F.softmax(F.adaptive_avg_pool2d(x2, 1).reshape(b * groups, -1, 1).permute(0, 2, 1), dim=-1)
    x22 = x1.reshape(b * groups, cg, -1)
    weights = (x11 @ x12 + x21 @ x22).reshape(b * groups, 1, h, w)
    return (gx * weights.sigmoid()).reshape(b, c, h, w)


@pytest.mark.parametrize("channels,groups,shape", [(64, 32, (2, 9, 13)), (96, 8, (1, 6, 6)), (32, 32, (2, 5, 7))])
def test_ema_matches_official_arithmetic(channels, groups, shape):
    b, h, w = shape
    ours = randomise(EfficientMultiScaleAttention(channels, groups))
    x = torch.randn(b, channels, h, w)
    torch.testing.assert_close(ours(x), ema_reference(x, ours, groups), atol=ATOL, rtol=RTOL)


def test_ema_defaults_and_refusals():
    ema = EfficientMultiScaleAttention(64)
    cg = 64 // 32
    assert ema.groups == 32
    assert n_params(ema) == (cg * cg + cg) + (9 * cg * cg + cg) + 2 * cg  # weights shared by the 32 groups
    with pytest.raises(ShapeError, match="groups"):
        attnzoo.create("ema", (1, 48, 8, 8))


# --- polarized self-attention: External-Attention-pytorch ------------------------------------------------

@pytest.mark.parametrize("layout,name", [("parallel", "ParallelPolarizedSelfAttention"),
                                         ("sequential", "SequentialPolarizedSelfAttention")])
def test_polarized_matches_eap(layout, name):
    c = 32
    ours = randomise(PolarizedSelfAttention(c, layout=layout))
    ref = getattr(eap("PolarizedSelfAttention"), name)(channel=c)
    names = {"ch_wv": "ch_value", "ch_wq": "ch_query", "ch_wz": "ch_up", "ln": "ch_norm", "sp_wv": "sp_value",
             "sp_wq": "sp_query"}
    state = ours.state_dict()
    ref.load_state_dict({f"{theirs}.{k}": state[f"{mine}.{k}"] for theirs, mine in names.items()
                         for k in ("weight", "bias")})
    x = torch.randn(2, c, 7, 10)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)


def test_polarized_defaults_and_layouts_differ():
    c = 64
    psa = PolarizedSelfAttention(c)
    assert psa.layout == "parallel"
    inner = c // 2
    assert n_params(psa) == 3 * (c * inner + inner) + (c + 1) + (inner * c + c) + 2 * c
    seq = PolarizedSelfAttention(c, layout="sequential")
    seq.load_state_dict(psa.state_dict())
    x = torch.randn(1, c, 5, 6)
    assert not torch.allclose(psa(x), seq(x), atol=1e-3)
    assert n_params(PolarizedSelfAttention(c, bias=False)) == 3 * c * inner + c + inner * c + 2 * c
    with pytest.raises(ValueError, match="layout"):
        PolarizedSelfAttention(c, layout="diagonal")


# --- EPSANet PSA: External-Attention-pytorch and the official code ------------------------------------------

EAP_LAYOUT = dict(split_input=True, groups=(1, 1, 1, 1), reduction=4, shared_se=False, conv_bias=True,
                  se_bias=False)


def test_epsa_matches_eap_psa_with_its_list_bug_worked_around():
    """EAP's PSA keeps its convolutions and SE blocks in plain Python lists (not registered: not in
    parameters() or state_dict(), not moved by .to()), so its state_dict cannot be loaded: the weights are
    copied into its list members directly. EAP's layout is the paper's text (input split into 4 parts, kernels
    3, 5, 7, 9 without groups, an SE per branch with reduction 4 and no biases); attnzoo builds it with the
    options below. EAP also writes the branch outputs into its input tensor: it is given a copy."""
    c = 64
    ours = EPSA(c, **EAP_LAYOUT)
    ref = eap("PSA").PSA(channel=c, reduction=4, S=4)
    assert list(ref.parameters()) == []  # the bug: nothing registered
    with torch.no_grad():
        for i in range(4):
            ref.convs[i].weight.copy_(ours.convs[i].weight)
            ref.convs[i].bias.copy_(ours.convs[i].bias)
            ref.se_blocks[i][1].weight.copy_(ours.se[i].fc1.weight)
            ref.se_blocks[i][3].weight.copy_(ours.se[i].fc2.weight)
    x = torch.randn(2, c, 9, 7)
    with torch.no_grad():
        expected = ref(x.clone())
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)


def epsa_official_reference(x: torch.Tensor, m: EPSA, kernels, groups) -> torch.Tensor:
    """murufeng/EPSANet PSAModule.forward, written out: each branch convolves the whole input, one shared
    SEWeightModule, softmax across branches, branches concatenated last-first."""
    b, _, h, w = x.shape
    feats = [F.conv2d(x, conv.weight, None, padding=k // 2, groups=g) for conv, k, g in zip(m.convs, kernels, groups)]
    se = m.se[0]

    def se_weight(f):
        pooled = F.adaptive_avg_pool2d(f, 1)
        return torch.sigmoid(F.conv2d(F.relu(F.conv2d(pooled, se.fc1.weight, se.fc1.bias)), se.fc2.weight,
                                      se.fc2.bias))

    split = feats[0].shape[1]
    stacked = torch.cat(feats, dim=1).view(b, 4, split, h, w)
    attention = torch.cat([se_weight(f) for f in feats], dim=1).view(b, 4, split, 1, 1).softmax(1)
    weighted = stacked * attention
    out = weighted[:, 0]
    for i in range(1, 4):
        out = torch.cat((weighted[:, i], out), 1)
    return out


def test_epsa_matches_official_psa_module():
    c, kernels, groups = 128, (3, 5, 7, 9), (1, 4, 8, 16)
    ours = EPSA(c)
    x = torch.randn(2, c, 8, 11)
    ref = epsa_official_reference(x, ours, kernels, groups)
    # The official concatenation puts the 9x9 branch first; attnzoo puts the 3x3 branch first.
    ref = torch.cat(list(reversed(ref.chunk(4, dim=1))), dim=1)
    torch.testing.assert_close(ours(x), ref, atol=ATOL, rtol=RTOL)


def test_epsa_every_conv_is_registered_and_moves():
    c = 64
    ours = EPSA(c)
    convs = [m for m in ours.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 + 2  # the four pyramid convolutions and the shared SE's two
    registered = {id(p) for p in ours.parameters()}
    assert all(id(conv.weight) in registered for conv in convs)
    assert [conv.groups for conv in ours.convs] == [1, 4, 8, 16]
    assert [conv.kernel_size for conv in ours.convs] == [(k, k) for k in (3, 5, 7, 9)]
    w = c // 4
    expected = sum(c // g * w * k * k for k, g in zip((3, 5, 7, 9), (1, 4, 8, 16))) + (w * 1 + 1) + (1 * w + w)
    assert n_params(ours) == expected
    assert len(ours.state_dict()) == 4 + 4
    ours.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    out, attn = ours(torch.randn(1, c, 5, 5, dtype=torch.float64), return_attention=True)
    assert out.dtype == torch.float64
    torch.testing.assert_close(attn.sum(1), torch.ones(1, w, 1, 1, dtype=torch.float64))
    assert n_params(EPSA(c, shared_se=False)) == expected + 3 * ((w + 1) + (w + w))


def test_epsa_refuses_channels_its_groups_cannot_take():
    with pytest.raises(ShapeError, match="groups 16"):
        attnzoo.create("epsa", (1, 96, 8, 8))
    with pytest.raises(ShapeError, match="reduction"):
        attnzoo.create("epsa", (1, 64, 8, 8), reduction=32)


# --- A^2 double attention: External-Attention-pytorch --------------------------------------------------------

def _eap_softmax_with_dims(dims: list[int]):
    """A stand-in for torch.nn.functional in EAP's A2Atttention module: its two F.softmax calls give no dim
    (PyTorch then takes dim 0 of a 3-D tensor, the batch); this gives them, in call order, the dims of the
    paper (the gather maps over positions, the distribution vectors over the c_n channels)."""
    queue = list(dims)

    def softmax(x, dim=None, **kwargs):
        assert dim is None, "EAP now passes a dim: drop this work-around"
        return F.softmax(x, dim=queue.pop(0))

    return types.SimpleNamespace(softmax=softmax)


@pytest.mark.parametrize("residual", [False, True])
def test_double_attention_matches_eap_with_softmax_dims_fixed(residual, monkeypatch):
    c = 32
    module = eap("A2Atttention")
    ours = DoubleAttention(c, residual=residual)
    ref = module.DoubleAttention(c, c // 4, c // 4)
    names = {"convA": "conv_a", "convB": "conv_b", "convV": "conv_v", "conv_reconstruct": "conv_out"}
    state = ours.state_dict()
    ref.load_state_dict({f"{theirs}.{k}": state[f"{mine}.{k}"] for theirs, mine in names.items()
                         for k in ("weight", "bias")})
    x = torch.randn(2, c, 7, 9)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        buggy = ref(x)  # the batch-wise softmax
    monkeypatch.setattr(module, "F", _eap_softmax_with_dims([-1, 1]))
    expected = ref(x)
    torch.testing.assert_close(ours(x), x + expected if residual else expected, atol=ATOL, rtol=RTOL)
    assert not torch.allclose(expected, buggy, atol=1e-3)  # the bug changes the result


def test_double_attention_defaults():
    c = 64
    a2 = DoubleAttention(c)
    assert (a2.c_m, a2.c_n, a2.residual) == (16, 16, True)
    assert n_params(a2) == (c * 16 + 16) * 3 + (16 * c + c)
    with pytest.raises(ShapeError, match="c_m"):
        attnzoo.create("double-attention", (1, 3, 8, 8))


# --- CoT: the official CotLayer (JDAI-CV/CoTNet), its CUDA LocalConvolution written out --------------------------

def local_convolution(x: torch.Tensor, weight: torch.Tensor, k: int) -> torch.Tensor:
    """CoTNet's aggregation_zeropad kernel: out[b, c, h, w] = sum over the zero-padded k x k window of
    weight[b, c mod Cw, tap, h, w] * x[b, c, h + dh, w + dw], weight of shape (B, Cw, k*k, H, W)."""
    b, c, h, w = x.shape
    cw = weight.shape[1]
    pad = k // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    index = torch.arange(c) % cw
    out = torch.zeros_like(x)
    for kh in range(k):
        for kw in range(k):
            out = out + weight[:, index, kh * k + kw] * padded[:, :, kh:kh + h, kw:kw + w]
    return out


def cot_reference(x: torch.Tensor, m: ContextualTransformer) -> torch.Tensor:
    """CotLayer.forward (eval mode), step by step, with functional calls on the block's weights."""
    b, c, h, w = x.shape
    k = m.kernel_size
    keys = F.relu(bn(F.conv2d(x, m.key_conv.weight, padding=k // 2, groups=4), m.key_bn))
    qk = torch.cat([x, keys], dim=1)
    emb = F.relu(bn(F.conv2d(qk, m.embed1.weight), m.embed_bn))
    emb = F.conv2d(emb, m.embed2.weight, m.embed2.bias)
    emb = F.group_norm(emb, c // 8, m.embed_gn.weight, m.embed_gn.bias, m.embed_gn.eps)
    weight = emb.view(b, c // 8, k * k, h, w)
    value = bn(F.conv2d(x, m.value_conv.weight), m.value_bn)
    y = F.silu(bn(local_convolution(value, weight, k), m.bn))
    both = torch.cat([y.view(b, c, 1, h, w), keys.view(b, c, 1, h, w)], dim=2)
    gap = both.sum(dim=2).mean((2, 3), keepdim=True)
    attn = F.conv2d(F.relu(bn(F.conv2d(gap, m.fuse1.weight, m.fuse1.bias), m.fuse_bn)), m.fuse2.weight,
                    m.fuse2.bias)
    attn = F.softmax(attn.view(b, c, 2), dim=2)
    return (both * attn.reshape(b, c, 2, 1, 1)).sum(dim=2)


@pytest.mark.parametrize("channels,kernel_size,shape", [(32, 3, (2, 7, 10)), (64, 5, (1, 6, 5))])
def test_cot_matches_official_cot_layer(channels, kernel_size, shape):
    b, h, w = shape
    ours = randomise(ContextualTransformer(channels, kernel_size)).eval()
    x = torch.randn(b, channels, h, w)
    torch.testing.assert_close(ours(x), cot_reference(x, ours), atol=ATOL, rtol=RTOL)


def test_cot_defaults_and_refusals():
    c, k = 64, 3
    cot = ContextualTransformer(c)
    attn = max(c // 2, 32)
    expected = (c * (c // 4) * k * k + 2 * c) + (2 * c * (c // 2) + 2 * (c // 2)) \
        + ((c // 2) * k * k * (c // 8) + k * k * (c // 8)) + 2 * k * k * (c // 8) \
        + (c * c + 2 * c) + 2 * c + (c * attn + attn + 2 * attn) + (attn * 2 * c + 2 * c)
    assert n_params(cot) == expected
    _, local = cot.eval()(torch.randn(1, c, 4, 5), return_attention=True)
    assert local.shape == (1, c // 8, k * k, 20)
    with pytest.raises(ShapeError, match="multiple of 8"):
        attnzoo.create("cot", (1, 12, 8, 8))


# --- blocks that batch-normalise pooled descriptors: a clear refusal of batch 1 in training ------------------

@pytest.mark.parametrize("block", [GatherExcite(16, 5, 4), SplitAttention(16), ContextualTransformer(16)],
                         ids=["gather-excite", "split-attention", "cot"])
def test_pooled_batchnorm_blocks_refuse_batch_one_in_training(block):
    with pytest.raises(ValueError, match="batch of at least 2"):
        block.train()(torch.randn(1, 16, 5, 4))
    assert block.eval()(torch.randn(1, 16, 5, 4)).shape == (1, 16, 5, 4)
