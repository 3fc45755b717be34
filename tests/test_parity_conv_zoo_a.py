"""Issue 10, first half: ECA, coordinate attention, SimAM, triplet attention, GCNet, non-local, DANet,
criss-cross, shuffle attention and SGE against independent implementations on copied weights: timm
(EcaModule, CoordAttn, GlobalContext, NonLocalAttn) and External-Attention-pytorch as packaged in
``fightingcv-attention`` (SimAM, TripletAttention, CoordAtt, ShuffleAttention, SpatialGroupEnhance, DANet's
modules, CrissCrossAttention); criss-cross also against dense attention under a row-and-column mask
written out here, and DANet's channel module against its formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from fightingcv_attention.attention.CoordAttention import CoordAtt as EapCoordAtt
from fightingcv_attention.attention.CrissCrossAttention import CrissCrossAttention as EapCrissCross
from fightingcv_attention.attention.DANet import ChannelAttentionModule as EapChannelModule
from fightingcv_attention.attention.DANet import DAModule as EapDAModule
from fightingcv_attention.attention.DANet import PositionAttentionModule as EapPositionModule
from fightingcv_attention.attention.SGE import SpatialGroupEnhance as EapSGE
from fightingcv_attention.attention.ShuffleAttention import ShuffleAttention as EapShuffleAttention
from fightingcv_attention.attention.SimAM import SimAM as EapSimAM
from fightingcv_attention.attention.TripletAttention import TripletAttention as EapTripletAttention
from timm.layers.coord_attn import CoordAttn as TimmCoordAttn
from timm.layers import EcaModule as TimmEcaModule
from timm.layers import GlobalContext as TimmGlobalContext
from timm.layers import NonLocalAttn as TimmNonLocalAttn

import attnzoo
from attnzoo.blocks.coord_attention import CoordinateAttention
from attnzoo.blocks.criss_cross import CrissCrossAttention
from attnzoo.blocks.danet import ChannelAttention, DualAttention, PositionAttention
from attnzoo.blocks.eca import ECA
from attnzoo.blocks.global_context import GlobalContext
from attnzoo.blocks.non_local import NonLocal
from attnzoo.blocks.sge import SpatialGroupEnhance
from attnzoo.blocks.shuffle_attention import ShuffleAttention
from attnzoo.blocks.simam import SimAM
from attnzoo.blocks.triplet import TripletAttention
from attnzoo.errors import ShapeError

ATOL = 1e-5
RTOL = 1e-4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise(module: nn.Module) -> nn.Module:
    """Every parameter and BatchNorm statistic random, so zero-initialised parts (gammas, last convs) and
    eval-mode normalisation are really exercised."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return module


def copy_into(ref: nn.Module, ours: nn.Module, mapping: dict[str, str] | None = None) -> None:
    """Load our state into ``ref``: ``mapping`` from the reference's keys to ours (identity by default);
    every reference key must be covered."""
    state = ours.state_dict()
    keys = ref.state_dict().keys()
    mapping = mapping or {k: k for k in keys}
    assert set(mapping) == set(keys), f"unmapped reference keys: {set(keys) - set(mapping)}"
    ref.load_state_dict({k: state[v] for k, v in mapping.items()})


def compare(ours: nn.Module, ref: nn.Module, x: torch.Tensor, train: bool) -> None:
    ours.train(train)
    ref.train(train)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)


# --- ECA: timm EcaModule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [64, 256, 2048])
def test_eca_matches_timm(channels):
    ours = randomise(ECA(channels))
    ref = TimmEcaModule(channels)
    assert ours.kernel_size == ref.conv.kernel_size[0]
    copy_into(ref, ours)
    compare(ours, ref, torch.randn(2, channels, 9, 7), train=False)


def test_eca_kernel_size_follows_the_paper():
    # t = int(|(log2 C + 1) / 2|), made odd: 64 -> 3, 128 -> 5 (t = 4), 256 -> 5, 512 -> 5, 2048 -> 7 (t = 6).
    assert [ECA(c).kernel_size for c in (64, 128, 256, 512, 2048)] == [3, 5, 5, 5, 7]
    for c in (8, 24, 48, 96, 160, 1000):
        assert ECA(c).kernel_size == TimmEcaModule(c).conv.kernel_size[0]
    assert ECA(4).kernel_size == 1  # timm clamps to 3 below 8 channels; the paper's mapping gives 1
    assert n_params(ECA(256)) == 5 and ECA(64, kernel_size=7).kernel_size == 7
    with pytest.raises(ValueError, match="kernel_size"):
        ECA(64, kernel_size=4)


# --- coordinate attention: timm CoordAttn and EAP CoordAtt -------------------------------------------------

@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels", [64, 512])
def test_coord_attention_matches_timm_and_eap(channels, train):
    ours = randomise(CoordinateAttention(channels))
    mip = max(8, channels // 32)
    assert ours.mip == mip
    x = torch.randn(2, channels, 9, 6)
    timm_ref = TimmCoordAttn(channels, rd_channels=mip, bias=True)  # Hardswish, BatchNorm, sigmoid gates
    copy_into(timm_ref, ours)
    compare(ours, timm_ref, x, train)
    eap_ref = EapCoordAtt(channels, channels, reduction=32)
    copy_into(eap_ref, ours)
    compare(ours, eap_ref, x, train)


def test_coord_attention_parameter_count():
    c, mip = 256, 8
    assert n_params(CoordinateAttention(c)) == (c * mip + mip) + 2 * mip + 2 * (mip * c + c)


# --- SimAM: EAP ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 16, 9, 7), (1, 3, 1, 5)])
def test_simam_matches_eap(shape):
    x = torch.randn(shape)
    torch.testing.assert_close(SimAM()(x), EapSimAM(e_lambda=1e-4)(x), atol=ATOL, rtol=RTOL)


def test_simam_on_a_single_pixel_is_finite():
    x = torch.randn(2, 8, 1, 1)
    out = SimAM()(x)  # the reference divides by H W - 1 = 0 here
    torch.testing.assert_close(out, x * torch.sigmoid(torch.tensor(0.5)))
    assert n_params(SimAM()) == 0


# --- triplet attention: EAP ------------------------------------------------------------------------------

@pytest.mark.parametrize("no_spatial", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_triplet_attention_matches_eap(no_spatial, train):
    ours = randomise(TripletAttention(no_spatial=no_spatial))
    ref = EapTripletAttention(no_spatial=no_spatial)
    branches = ["cw", "hc"] + ([] if no_spatial else ["hw"])
    mapping = {f"{b}.conv.conv.weight": f"{b}.conv.weight" for b in branches}
    for b in branches:
        for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapping[f"{b}.conv.bn.{key}"] = f"{b}.bn.{key}"
    copy_into(ref, ours, mapping)
    compare(ours, ref, torch.randn(2, 12, 9, 7), train)


# --- GCNet: timm GlobalContext -----------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [64, 256])
def test_global_context_matches_timm(channels):
    ours = randomise(GlobalContext(channels))
    ref = TimmGlobalContext(channels, fuse_add=True, fuse_scale=False, rd_ratio=1 / 16, rd_channels=channels // 16)
    ref.mlp_add.norm.eps = 1e-5  # the authors' nn.LayerNorm default; timm's LayerNorm2d uses 1e-6
    mapping = {"conv_attn.weight": "conv_mask.weight", "conv_attn.bias": "conv_mask.bias"}
    for part in ("fc1", "norm", "fc2"):
        for key in ("weight", "bias"):
            mapping[f"mlp_add.{part}.{key}"] = f"{part}.{key}"
    copy_into(ref, ours, mapping)
    compare(ours, ref, torch.randn(2, channels, 7, 10), train=False)


def test_global_context_starts_as_identity_and_counts_parameters():
    c, r = 64, 16
    block = GlobalContext(c)
    x = torch.randn(2, c, 5, 6)
    torch.testing.assert_close(block(x), x)
    assert n_params(block) == (c + 1) + (c * (c // r) + c // r) + 2 * (c // r) + (c // r * c + c)


# --- non-local: timm NonLocalAttn with the paper's settings ------------------------------------------------

@pytest.mark.parametrize("train", [True, False])
def test_non_local_matches_timm_with_paper_settings(train):
    c = 32
    ours = randomise(NonLocal(c))
    assert ours.inner == c // 2
    # timm's defaults are not the paper's (inner C/8 rounded to 8, logits scaled by C^-1/2): set them.
    ref = TimmNonLocalAttn(c, use_scale=False, rd_channels=c // 2)
    mapping = {}
    for theirs, mine in (("t", "theta"), ("p", "phi"), ("g", "g"), ("z", "w_z")):
        mapping[f"{theirs}.weight"], mapping[f"{theirs}.bias"] = f"{mine}.weight", f"{mine}.bias"
    for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapping[f"norm.{key}"] = f"bn.{key}"
    copy_into(ref, ours, mapping)
    compare(ours, ref, torch.randn(2, c, 6, 9), train)


def test_non_local_starts_as_identity_and_exposes_weights():
    block = NonLocal(16).eval()
    x = torch.randn(2, 16, 4, 5)
    out, weights = block(x, return_attention=True)
    torch.testing.assert_close(out, x)
    assert weights.shape == (2, 20, 20)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 20))


# --- DANet: EAP's modules at the right size, identity-set extras; the channel module's formula --------------

def _identity_conv3x3(conv: nn.Conv2d, scale: float = 1.0) -> None:
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for i in range(conv.out_channels):
            conv.weight[i, i, 1, 1] = scale


def _eap_position(ours: PositionAttention, channels: int) -> nn.Module:
    """EAP's PositionAttentionModule built with d_model = channels (its DAModule ignores d_model and builds
    512-channel parts), its extra layers set to identity: the 3x3 conv, fc_o, and dropout (eval); our C/8
    queries and keys zero-padded to its full width, the query scaled by sqrt(d_k) to undo its 1/sqrt(d_k)."""
    ref = EapPositionModule(d_model=channels, kernel_size=3)
    _identity_conv3x3(ref.cnn)
    inner, root = ours.inner, math.sqrt(channels)
    with torch.no_grad():
        for lin in (ref.pa.fc_q, ref.pa.fc_k):
            lin.weight.zero_()
            lin.bias.zero_()
        ref.pa.fc_q.weight[:inner] = ours.query.weight[:, :, 0, 0] * root
        ref.pa.fc_q.bias[:inner] = ours.query.bias * root
        ref.pa.fc_k.weight[:inner] = ours.key.weight[:, :, 0, 0]
        ref.pa.fc_k.bias[:inner] = ours.key.bias
        ref.pa.fc_v.weight.copy_(ours.value.weight[:, :, 0, 0])
        ref.pa.fc_v.bias.copy_(ours.value.bias)
        ref.pa.fc_o.weight.copy_(torch.eye(channels))
        ref.pa.fc_o.bias.zero_()
    return ref.eval()


def test_danet_position_module_matches_eap():
    c, h, w = 32, 5, 7
    ours = randomise(PositionAttention(c))
    ref = _eap_position(ours, c)
    x = torch.randn(2, c, h, w)
    attended = ref(x).transpose(1, 2).reshape(2, c, h, w)  # (B, N, C) -> (B, C, H, W)
    torch.testing.assert_close(ours(x), ours.gamma * attended + x, atol=ATOL, rtol=RTOL)


def test_danet_channel_module_paper_energy_matches_eap():
    c, h, w = 16, 4, 6
    ours = randomise(ChannelAttention(energy="paper"))
    ref = EapChannelModule(d_model=c, kernel_size=3, H=h, W=w)
    scale = (h * w) ** 0.25  # its logits are (s x)(s x)^T / sqrt(HW) = x x^T; its values s x, undone by fc_o
    _identity_conv3x3(ref.cnn, scale)
    with torch.no_grad():
        ref.pa.fc_o.weight.copy_(torch.eye(h * w) / scale)
        ref.pa.fc_o.bias.zero_()
    ref.eval()
    x = torch.randn(2, c, h, w) * 0.3
    attended = ref(x).view(2, c, h, w)
    torch.testing.assert_close(ours(x), ours.gamma * attended + x, atol=ATOL, rtol=RTOL)


def test_danet_channel_module_official_energy_formula():
    """The authors' CAM: softmax(rowmax(E) - E) with E = A A^T, which is softmax(-E) (softmax is shift-free)."""
    ours = randomise(ChannelAttention())
    x = torch.randn(2, 12, 5, 4) * 0.3
    a = x.flatten(2)
    attention = torch.softmax(-(a @ a.transpose(1, 2)), dim=-1)
    expected = ours.gamma * (attention @ a).view_as(x) + x
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)


def test_danet_is_the_sum_of_both_modules():
    c, h, w = 32, 6, 5
    ours = randomise(DualAttention(c, cam_energy="paper"))
    position = _eap_position(ours.position, c)
    channel = EapChannelModule(d_model=c, kernel_size=3, H=h, W=w)
    scale = (h * w) ** 0.25
    _identity_conv3x3(channel.cnn, scale)
    with torch.no_grad():
        channel.pa.fc_o.weight.copy_(torch.eye(h * w) / scale)
        channel.pa.fc_o.bias.zero_()
    channel.eval()
    x = torch.randn(2, c, h, w) * 0.3
    expected = (ours.position.gamma * position(x).transpose(1, 2).reshape(2, c, h, w) + x
                + ours.channel.gamma * channel(x).view(2, c, h, w) + x)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=RTOL)
    assert n_params(DualAttention(c)) == 2 * (c * (c // 8) + c // 8) + (c * c + c) + 2


def test_eap_damodule_ignores_d_model():
    """The bug worked around above: EAP's DAModule builds its parts at 512 channels whatever d_model says."""
    module = EapDAModule(d_model=64, kernel_size=3, H=4, W=4)
    assert module.position_attention_module.cnn.in_channels == 512
    with pytest.raises(RuntimeError):
        module(torch.randn(1, 64, 4, 4))


# --- criss-cross: dense attention under a row-and-column mask; EAP -----------------------------------------

def _conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias.view(1, -1, 1, 1)


def _criss_cross_mask(h: int, w: int) -> torch.Tensor:
    """(N, N): position i sees position j when they share a row or a column (itself once)."""
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    return (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])


def _dense_criss_cross(block: CrissCrossAttention, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    mask = _criss_cross_mask(h, w)
    assert (mask.sum(-1) == h + w - 1).all()  # the paper's H + W - 1 keys per pixel
    for _ in range(block.recurrence):
        q = _conv1x1(x, block.query).flatten(2)  # (B, C', N)
        k = _conv1x1(x, block.key).flatten(2)
        v = _conv1x1(x, block.value).flatten(2)  # (B, C, N)
        logits = (q.transpose(1, 2) @ k).masked_fill(~mask, float("-inf"))  # (B, N, N)
        out = v @ torch.softmax(logits, dim=-1).transpose(1, 2)  # (B, C, N)
        x = block.gamma * out.view(b, c, h, w) + x
    return x


@pytest.mark.parametrize("recurrence", [1, 2])
@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (1, 24, 1, 6), (1, 8, 4, 1)])
def test_criss_cross_matches_masked_dense_attention(shape, recurrence):
    block = randomise(CrissCrossAttention(shape[1], recurrence=recurrence))
    x = torch.randn(shape)
    torch.testing.assert_close(block(x), _dense_criss_cross(block, x), atol=ATOL, rtol=RTOL)


def test_criss_cross_matches_eap():
    c = 32
    ours = randomise(CrissCrossAttention(c, recurrence=2))
    ref = EapCrissCross(c)
    mapping = {"gamma": "gamma"}
    for part in ("query", "key", "value"):
        for key in ("weight", "bias"):
            mapping[f"{part}_conv.{key}"] = f"{part}.{key}"
    copy_into(ref, ours, mapping)
    x = torch.randn(2, c, 6, 9)
    torch.testing.assert_close(ours(x), ref(ref(x)), atol=ATOL, rtol=RTOL)  # RCCA: the same module twice


# --- shuffle attention: EAP with G set ----------------------------------------------------------------------

@pytest.mark.parametrize("channels,groups", [(256, 64), (64, 8)])
@pytest.mark.parametrize("train", [True, False])
def test_shuffle_attention_matches_eap(channels, groups, train):
    ours = randomise(ShuffleAttention(channels, groups=groups))
    assert ours.groups == groups
    ref = EapShuffleAttention(channel=channels, G=groups)
    copy_into(ref, ours)
    compare(ours, ref, torch.randn(2, channels, 7, 5), train)


def test_shuffle_attention_groups_and_refusals():
    assert ShuffleAttention(512).groups == 64 and ShuffleAttention(64).groups == 32
    assert n_params(ShuffleAttention(512)) == 6 * 512 // 128  # cweight, cbias, sweight, sbias, GN affine
    with pytest.raises(ShapeError, match="groups") as info:
        attnzoo.create("shuffle-attention", (1, 200, 4, 4))
    assert "\n" not in str(info.value)


# --- SGE: EAP ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,groups", [(128, 64), (64, 8)])
def test_sge_matches_eap(channels, groups):
    ours = randomise(SpatialGroupEnhance(channels, groups=groups))
    ref = EapSGE(groups)
    copy_into(ref, ours)
    x = torch.randn(2, channels, 6, 5)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)


def test_sge_defaults_and_refusals():
    block = SpatialGroupEnhance(256)
    assert block.groups == 64 and n_params(block) == 128
    assert not block.weight.any() and (block.bias == 1).all()  # the authors' initialisation
    assert SpatialGroupEnhance(32).groups == 32
    with pytest.raises(ShapeError, match="groups"):
        attnzoo.create("sge", (1, 96, 4, 4))
    with pytest.raises(ValueError, match="2 positions"):
        block(torch.randn(1, 256, 1, 1))


# --- refusals through the build: one line naming the argument ------------------------------------------------

@pytest.mark.parametrize("name", ["non-local", "danet", "criss-cross"])
def test_narrow_maps_are_refused_in_one_line(name):
    with pytest.raises(ShapeError, match="reduction") as info:
        attnzoo.create(name, (1, 1, 4, 4))
    assert "\n" not in str(info.value)
