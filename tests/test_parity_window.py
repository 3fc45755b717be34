"""Efficient and windowed token mixers (issue 11) against timm 1.0.31 on copied weights: LiteMLA, MobileViTv2
separable attention, SwiftFormer additive attention, focal modulation, Swin (shifted) window attention, halo
attention, lambda layer and outlook attention. Square and non-square maps; for Swin the shifted mask and the
padding of maps that are not a multiple of the window."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers.halo_attn import HaloAttn
from timm.layers.lambda_layer import LambdaLayer as TimmLambdaLayer
from timm.models.efficientvit_mit import LiteMLA as TimmLiteMLA
from timm.models.focalnet import FocalModulation as TimmFocalModulation
from timm.models.mobilevit import LinearSelfAttention
from timm.models.swiftformer import EfficientAdditiveAttention as TimmAdditive
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.volo import OutlookAttention as TimmOutlook

import attnzoo
from attnzoo.blocks.efficientvit import LiteMLA
from attnzoo.blocks.focalnet import FocalModulation
from attnzoo.blocks.halo import HaloAttention
from attnzoo.blocks.lambda_layer import LambdaLayer
from attnzoo.blocks.mobilevit import SeparableSelfAttention
from attnzoo.blocks.swiftformer import EfficientAdditiveAttention
from attnzoo.blocks.swin import SwinWindowAttention
from attnzoo.blocks.volo import OutlookAttention
from attnzoo.errors import ShapeError

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomise(module: nn.Module) -> nn.Module:
    """Every parameter away from its initial value (zero biases, unit norms) and non-trivial BatchNorm
    statistics, so that a parameter used in the wrong place shows."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return module


def load_into(ref: nn.Module, ours: nn.Module, mapping: dict[str, str] | None = None) -> None:
    """Copy our state into the reference: ``mapping`` gives reference name -> our name where they differ."""
    state = ours.state_dict()
    mapping = mapping or {}
    ref_keys = ref.state_dict().keys()
    ref.load_state_dict({key: state[mapping.get(key, key)] for key in ref_keys})


def tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


# --- EfficientViT LiteMLA ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,h,w", [(64, 16, 16), (48, 9, 14), (20, 7, 11)])
@pytest.mark.parametrize("train", [False, True])
def test_lite_mla_matches_timm(channels, h, w, train):
    ours = randomise(LiteMLA(channels))
    ref = TimmLiteMLA(channels, channels, dim=8)  # EfficientViT-B: qkv conv without norm, proj conv + BN
    load_into(ref, ours, {"qkv.conv.weight": "qkv.weight", "proj.conv.weight": "proj.weight",
                          **{f"proj.norm.{k}": f"norm.{k}" for k in
                             ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}})
    assert ours.heads == channels // 8
    ours.train(train)
    ref.train(train)
    x = torch.randn(2, channels, h, w)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-4)


def test_lite_mla_refuses_fewer_channels_than_a_head():
    with pytest.raises(ValueError, match="head_dim"):
        LiteMLA(4)
    with pytest.raises(ShapeError, match="head_dim"):
        attnzoo.create("lite-mla", (1, 3, 8, 8))


# --- MobileViTv2 separable self-attention -----------------------------------------------------------------

@pytest.mark.parametrize("channels,h,w", [(64, 16, 16), (32, 10, 18)])
def test_separable_attention_matches_timm_on_the_whole_map(channels, h, w):
    ours = randomise(SeparableSelfAttention(channels))
    ref = LinearSelfAttention(channels)
    load_into(ref, ours)
    x = torch.randn(2, channels, h, w)
    expected = ref(x.reshape(2, channels, 1, h * w)).reshape(2, channels, h, w)  # P = 1: one context
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=1e-4)


def test_separable_attention_with_mobilevit2_patches_matches_timm():
    """patch_size 2: timm's module on the map unfolded into (B, C, P = 4, N / 4), built here with F.unfold."""
    c, h, w, p = 16, 8, 12, 2
    ours = randomise(SeparableSelfAttention(c, patch_size=p))
    ref = LinearSelfAttention(c)
    load_into(ref, ours)
    x = torch.randn(2, c, h, w)
    patches = F.unfold(x, p, stride=p).reshape(2, c, p * p, -1)  # (B, C, P, N/P), patches row-major
    expected = F.fold(ref(patches).reshape(2, c * p * p, -1), (h, w), p, stride=p)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=1e-4)
    # Each offset has its own softmax: P contexts, so the result differs from the single-context module.
    single = SeparableSelfAttention(c)
    single.load_state_dict(ours.state_dict())
    assert not torch.allclose(single(x), expected, atol=1e-3)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        SeparableSelfAttention(c, patch_size=2, height=7, width=8)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        ours(torch.randn(1, c, 7, 8))


# --- SwiftFormer efficient additive attention -------------------------------------------------------------

@pytest.mark.parametrize("channels,h,w,heads", [(64, 16, 16, 1), (32, 7, 13, 1), (16, 6, 9, 2)])
def test_efficient_additive_attention_matches_timm(channels, h, w, heads):
    ours = randomise(EfficientAdditiveAttention(channels, num_heads=heads))
    ref = TimmAdditive(in_dims=channels, token_dim=channels, num_heads=heads)  # SwiftFormer: token_dim = dim
    load_into(ref, ours)
    x = torch.randn(2, channels, h, w)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-4)


# --- FocalNet focal modulation ----------------------------------------------------------------------------

@pytest.mark.parametrize("channels,h,w", [(64, 16, 16), (24, 9, 15)])
@pytest.mark.parametrize("normalize", [False, True])
def test_focal_modulation_matches_timm(channels, h, w, normalize):
    ours = randomise(FocalModulation(channels, normalize_modulator=normalize))
    ref = TimmFocalModulation(channels, focal_window=3, focal_level=2, normalize_modulator=normalize)
    assert ref.kernel_sizes == [3, 5]
    assert [layer[0].kernel_size for layer in ours.focal_layers] == [(3, 3), (5, 5)]
    load_into(ref, ours)
    x = torch.randn(2, channels, h, w)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-4)


# --- Swin window attention --------------------------------------------------------------------------------

def _swin_pair(dim, heads, h, w, shift, resolution=None):
    """Ours for an h x w map, and timm's block for ``resolution`` (default h x w) holding our weights."""
    ours = randomise(SwinWindowAttention(dim, h, w, num_heads=heads, shift=shift))
    block = SwinTransformerBlock(dim, resolution or (h, w), num_heads=heads, window_size=7,
                                 shift_size=3 if shift else 0)
    load_into(block.attn, ours)
    return ours.eval(), block.eval()


@pytest.mark.parametrize("h,w,shift,window,shift_size", [
    (14, 14, False, (7, 7), (0, 0)),
    (14, 21, True, (7, 7), (3, 3)),   # non-square, shifted, multiples of the window
    (10, 17, False, (7, 7), (0, 0)),  # padded to 14 x 21, no shift
    (5, 14, True, (5, 7), (0, 3)),    # a side shorter than the window shrinks it and is not shifted
])
def test_swin_window_attention_matches_timm_block(h, w, shift, window, shift_size):
    dim, heads = 32, 4
    ours, block = _swin_pair(dim, heads, h, w, shift)
    assert ours.window == tuple(block.window_size) == window
    assert ours.shift_size == tuple(block.shift_size) == shift_size
    x = torch.randn(2, h, w, dim)
    with torch.no_grad():
        expected = block._attn(x).reshape(2, h * w, dim)  # timm's attention branch (no norm, MLP, residual)
        out = ours(x.reshape(2, h * w, dim))
        explicit, weights = ours(x.reshape(2, h * w, dim), return_attention=True)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(explicit, expected, atol=ATOL, rtol=1e-4)
    n = window[0] * window[1]
    assert weights.shape[-2:] == (n, n)


def test_swin_shift_mask_separates_the_rolled_borders():
    """The mask is what makes SW-MSA differ from attention over the rolled map: without it the last
    windows mix the top and bottom rows. Ours with the mask removed equals timm's block with its mask removed."""
    dim, heads, h, w = 16, 2, 14, 14
    ours, block = _swin_pair(dim, heads, h, w, shift=True)
    assert ours.shift_mask.shape == (4, 49, 49) and (ours.shift_mask == -100).any()
    assert (ours.shift_mask[0] == 0).all()  # the first window holds one region only
    x = torch.randn(1, h, w, dim)
    with torch.no_grad():
        masked = ours(x.reshape(1, h * w, dim))
        ours.shift_mask = None
        block.attn_mask = None
        unmasked = ours(x.reshape(1, h * w, dim))
        expected = block._attn(x).reshape(1, h * w, dim)
    torch.testing.assert_close(unmasked, expected, atol=ATOL, rtol=1e-4)
    assert not torch.allclose(masked, unmasked, atol=1e-3)


@pytest.mark.parametrize("h,w", [(12, 12), (12, 17), (9, 20)])
def test_swin_shifted_padding_matches_timm_on_the_padded_map(h, w):
    """Shift + padding: ours pads, then rolls (the official detection code). The reference is timm's block
    run on the zero-padded map (a multiple of the window, so timm's mask fits its roll), cropped."""
    dim, heads = 16, 2
    hp, wp = -(-h // 7) * 7, -(-w // 7) * 7
    ours, block = _swin_pair(dim, heads, h, w, shift=True, resolution=(hp, wp))
    x = torch.randn(2, h, w, dim)
    with torch.no_grad():
        padded = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        expected = block._attn(padded)[:, :h, :w].reshape(2, h * w, dim)
        out = ours(x.reshape(2, h * w, dim))
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=1e-4)


def test_swin_timm_unpadded_shift_mixes_the_borders_at_12():
    """Why attnzoo does not follow timm here: timm rolls the 12 x 12 map and pads after, while its mask is
    cut for the padded 14 x 14 grid, so rows 10-11 and rows 0-1 (opposite borders) share a mask region.
    Changing row 0 then changes timm's output at row 11 (not a neighbour within the shifted windows);
    ours stays put there."""
    dim, heads, h = 16, 2, 12
    ours, block = _swin_pair(dim, heads, h, h, shift=True)
    x = torch.randn(1, h, h, dim)
    y = x.clone()
    y[:, 0] += 1.0
    with torch.no_grad():
        timm_change = (block._attn(y) - block._attn(x))[:, 11].abs().max()
        ours_change = (ours(y.reshape(1, -1, dim)) - ours(x.reshape(1, -1, dim))).reshape(1, h, h, dim)[:, 11]
    assert timm_change > 1e-3
    assert ours_change.abs().max() < 1e-6


def test_swin_card_defaults_and_refusals():
    block = attnzoo.create("swin-window-attention", (1, 64, 16, 16))[0].block
    assert block.num_heads == 2 and block.window == (7, 7) and block.shift_size == (0, 0)
    assert block.relative_position_bias_table.shape == (13 * 13, 2)
    shifted = attnzoo.create("swin-window-attention", (1, 64, 16, 16), shift=True)[0].block
    assert shifted.shift_size == (3, 3)
    with pytest.raises(ShapeError, match="num_heads"):
        attnzoo.create("swin-window-attention", (1, 3, 8, 8))


# --- halo attention ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,h,w,heads,block,halo", [
    (64, 16, 16, 8, 8, 3), (32, 16, 24, 8, 8, 3), (16, 8, 12, 4, 4, 2)])
def test_halo_attention_matches_timm(channels, h, w, heads, block, halo):
    ours = randomise(HaloAttention(channels, num_heads=heads, block_size=block, halo_size=halo))
    ref = HaloAttn(channels, num_heads=heads, block_size=block, halo_size=halo)
    load_into(ref, ours, {"pos_embed.height_rel": "height_rel", "pos_embed.width_rel": "width_rel"})
    x = torch.randn(2, channels, h, w)
    expected = ref(x)
    torch.testing.assert_close(ours(x), expected, atol=ATOL, rtol=1e-4)
    explicit, weights = ours(x, return_attention=True)
    torch.testing.assert_close(explicit, expected, atol=ATOL, rtol=1e-4)
    assert weights.shape == (2, heads, (h // block) * (w // block), block * block, (block + 2 * halo) ** 2)


def test_halo_attention_refuses_maps_not_a_multiple_of_the_block():
    with pytest.raises(ValueError, match="multiple of block_size"):
        HaloAttention(64, height=17, width=16)
    with pytest.raises(ValueError, match="multiples of block_size"):
        HaloAttention(64)(torch.randn(1, 64, 16, 12))
    with pytest.raises(ShapeError, match="block_size"):
        attnzoo.create("halo-attention", (1, 48, 17, 23))


# --- lambda layer -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,h,w,r", [(64, 16, 16, 9), (32, 11, 19, 9), (16, 6, 10, 5)])
@pytest.mark.parametrize("train", [False, True])
def test_lambda_layer_matches_timm(channels, h, w, r, train):
    ours = randomise(LambdaLayer(channels, r=r))
    ref = TimmLambdaLayer(channels, num_heads=4, dim_head=16, r=r)
    load_into(ref, ours)
    ours.train(train)
    ref.train(train)
    x = torch.randn(2, channels, h, w)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-4)


# --- VOLO outlook attention -------------------------------------------------------------------------------

@pytest.mark.parametrize("dim,h,w,heads,stride", [(64, 16, 16, 2, 2), (32, 17, 23, 2, 2), (24, 9, 14, 3, 1)])
def test_outlook_attention_matches_timm(dim, h, w, heads, stride):
    ours = randomise(OutlookAttention(dim, h, w, num_heads=heads, stride=stride))
    ref = TimmOutlook(dim, num_heads=heads, kernel_size=3, padding=1, stride=stride)
    load_into(ref, ours)
    x = torch.randn(2, h, w, dim)  # timm takes (B, H, W, C); ours the same memory as (B, N, C)
    torch.testing.assert_close(ours(x.reshape(2, h * w, dim)), ref(x).reshape(2, h * w, dim),
                               atol=ATOL, rtol=1e-4)


def test_outlook_attention_refuses_the_wrong_token_count():
    with pytest.raises(ValueError, match="built for a 4 x 4"):
        OutlookAttention(16, 4, 4)(torch.randn(1, 15, 16))
