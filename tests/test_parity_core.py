"""The eight core blocks against independent implementations, on copied weights, and the papers' defaults."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from timm.layers import SEModule
from timm.layers.cbam import CbamModule

import attnzoo
from attnzoo.blocks.adapters import to_tokens
from attnzoo.blocks.cbam import CBAM
from attnzoo.blocks.conv_mha import ConvMultiHeadAttention
from attnzoo.blocks.external import ExternalAttention, MultiHeadExternalAttention
from attnzoo.blocks.se import SqueezeExcitation
from attnzoo.blocks.self_attention import MultiHeadAttention, ScaledDotProductSelfAttention, ViTAttention

ATOL = 1e-5


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- mha -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_mha_matches_torch_multihead_attention(fused):
    dim, heads = 64, 8
    ours = MultiHeadAttention(dim, heads, fused=fused).eval()
    ref = torch.nn.MultiheadAttention(dim, heads, bias=False, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_qs.weight, ours.w_ks.weight, ours.w_vs.weight]))
        ref.out_proj.weight.copy_(ours.fc.weight)
        ours.layer_norm.weight.uniform_(0.5, 1.5)
        ours.layer_norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 50, dim)
    with torch.no_grad():
        attended, ref_weights = ref(x, x, x, need_weights=True, average_attn_weights=False)
        expected = ours.layer_norm(attended + x)
        out, weights = ours(x, return_attention=True)
        assert torch.allclose(ours(x), expected, atol=ATOL)
    assert torch.allclose(out, expected, atol=ATOL)
    assert torch.allclose(weights, ref_weights, atol=ATOL)


def test_mha_defaults_follow_the_article():
    module, _ = attnzoo.create("mha", (2, 256, 4, 4))
    block = module.block
    assert block.num_heads == 8 and block.head_dim == 32
    assert all(layer.bias is None for layer in (block.w_qs, block.w_ks, block.w_vs, block.fc))
    assert block.layer_norm.eps == 1e-6 and block.dropout.p == 0.1
    assert n_params(block) == 4 * 256 * 256 + 2 * 256


# --- sdpa ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_sdpa_is_softmax_qkt_over_sqrt_d_times_v(fused):
    x = torch.randn(2, 40, 24)
    expected = torch.softmax(x @ x.transpose(1, 2) / math.sqrt(24), dim=-1) @ x
    block = ScaledDotProductSelfAttention(fused=fused)
    assert torch.allclose(block(x), expected, atol=ATOL)
    out, weights = block(x, return_attention=True)
    assert torch.allclose(out, expected, atol=ATOL)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 40), atol=ATOL)
    assert n_params(block) == 0


# --- vit-attention ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("proj_bias", [False, True])
def test_vit_attention_matches_timm(proj_bias):
    dim = 64
    ours = ViTAttention(dim, num_heads=8, proj_bias=proj_bias).eval()
    ref = TimmAttention(dim, num_heads=8, qkv_bias=False, proj_bias=proj_bias).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 49, dim)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=ATOL)
        assert torch.allclose(ours(x, return_attention=True)[0], ref(x), atol=ATOL)


def test_vit_attention_defaults_follow_the_article():
    block = ViTAttention(64)
    assert block.qkv.bias is None and block.proj.bias is None and block.num_heads == 8


# --- se --------------------------------------------------------------------------------------------------

def test_se_matches_timm_semodule():
    channels = 256
    ours = SqueezeExcitation(channels).eval()
    ref = SEModule(channels).eval()  # rd = make_divisible(256 / 16, 8) = 16 = 256 // 16
    with torch.no_grad():
        ref.fc1.weight.copy_(ours.fc1.weight[:, :, None, None])
        ref.fc1.bias.copy_(ours.fc1.bias)
        ref.fc2.weight.copy_(ours.fc2.weight[:, :, None, None])
        ref.fc2.bias.copy_(ours.fc2.bias)
    x = torch.randn(2, channels, 7, 5)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=ATOL)
    assert n_params(ours) == 2 * 256 * 16 + 16 + 256


# --- cbam ------------------------------------------------------------------------------------------------

def test_cbam_matches_timm_with_mlp_bias():
    channels = 64
    ours = CBAM(channels).eval()
    ref = CbamModule(channels, mlp_bias=True).eval()
    with torch.no_grad():
        ours.spatial_gate.bn.running_mean.fill_(0.1)
        ours.spatial_gate.bn.running_var.fill_(2.0)
        first, second = ours.channel_gate.mlp[0], ours.channel_gate.mlp[2]
        ref.channel.fc1.weight.copy_(first.weight[:, :, None, None])
        ref.channel.fc1.bias.copy_(first.bias)
        ref.channel.fc2.weight.copy_(second.weight[:, :, None, None])
        ref.channel.fc2.bias.copy_(second.bias)
        # CBAM's authors pool [max, mean]; timm pools [mean, max]: swap the kernel's input channels.
        ref.spatial.conv.conv.weight.copy_(ours.spatial_gate.conv.weight.flip(1))
        ref_bn, our_bn = ref.spatial.conv.bn, ours.spatial_gate.bn
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(ref_bn, name).copy_(getattr(our_bn, name))
    x = torch.randn(2, channels, 9, 11)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=ATOL)


def test_cbam_is_the_papers_full_module_by_default():
    module, _ = attnzoo.create("cbam", (2, 256, 24, 24))
    # MLP 256 -> 16 -> 256 with biases, 7x7 conv on 2 maps without bias, BN(1).
    assert n_params(module) == (256 * 16 + 16) + (16 * 256 + 256) + 2 * 49 + 2 == 8564
    assert module.spatial_gate.bn.momentum == 0.01
    channel_only, _ = attnzoo.create("cbam", (2, 256, 24, 24), no_spatial=True)
    assert channel_only.spatial_gate is None and n_params(channel_only) == 8464


# --- conv-mha --------------------------------------------------------------------------------------------

def _conv_mha_by_the_article(block: ConvMultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The article's forward, head by head with broadcast sums (its two bugs fixed), on the block's weights."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, -1)
    k_size, v_size = block.key_size, block.output_size
    outs = []
    for head in range(block.num_heads):
        qs, vs = slice(head * k_size, (head + 1) * k_size), slice(head * v_size, (head + 1) * v_size)
        queries = F.conv1d(flat, block.query.weight[qs], block.query.bias[qs])
        keys = F.conv1d(flat, block.key.weight[qs], block.key.bias[qs])
        values = F.conv1d(flat, block.value.weight[vs], block.value.bias[vs])
        u = torch.sum(queries.unsqueeze(2) * keys.unsqueeze(3), 1) / math.sqrt(k_size)  # (B, Nk, Nq)
        weights = F.softmax(u, dim=1)
        outs.append(torch.sum(weights.unsqueeze(1) * values.unsqueeze(3), 2))  # (B, v, Nq)
    z1 = torch.cat(outs, 1)
    z2 = block.norm1((block.proj_down(z1) + flat).transpose(1, 2)).transpose(1, 2)
    mixed = block.mixing_layer2(F.relu(block.mixing_layer1(z2)))
    z3 = block.norm2((mixed + z2).transpose(1, 2)).transpose(1, 2)
    return z3.reshape(b, c, h, w)


@pytest.mark.parametrize("fused", [True, False])
def test_conv_mha_matches_the_articles_arithmetic_on_a_non_square_map(fused):
    block = ConvMultiHeadAttention(32, fused=fused).eval()
    x = torch.randn(2, 32, 6, 9)
    with torch.no_grad():
        expected = _conv_mha_by_the_article(block, x)
        assert torch.allclose(block(x), expected, atol=1e-4)
        out, weights = block(x, return_attention=True)
    assert torch.allclose(out, expected, atol=1e-4)
    assert weights.shape == (2, 4, 54, 54) and torch.allclose(weights.sum(-1), torch.ones(2, 4, 54), atol=1e-5)


def test_conv_mha_defaults_follow_the_article():
    block = ConvMultiHeadAttention()
    per_head = 3 * (32 * 32 + 32)
    assert n_params(block) == 4 * per_head + (4 * 32 * 32 + 32) + 2 * (32 * 32 + 32) + 2 * 64


# --- external attention ----------------------------------------------------------------------------------

def test_external_attention_is_the_double_normalised_formula():
    block = ExternalAttention(32).eval()
    x = torch.randn(2, 32, 5, 7)
    with torch.no_grad():
        y = block.conv1(x).flatten(2)  # (B, C, N)
        scores = torch.einsum("sc,bcn->bsn", block.memory_key.weight[:, :, 0], y)
        attn = scores.softmax(-1)
        attn = attn / (1e-9 + attn.sum(1, keepdim=True))
        z = torch.einsum("cs,bsn->bcn", block.memory_value.weight[:, :, 0], attn).reshape(2, 32, 5, 7)
        expected = torch.relu(block.conv2(z) + x)
        out, weights = block(x, return_attention=True)
    assert torch.allclose(out, expected, atol=ATOL)
    assert torch.allclose(weights.sum(1), torch.ones(2, 35), atol=1e-5)  # l1 over the memory slots


def test_external_attention_defaults_follow_eanet():
    block = ExternalAttention(64)
    assert block.memory_key.weight.shape == (64, 64, 1) and block.memory_key.bias is None
    assert torch.equal(block.memory_value.weight, block.memory_key.weight.permute(1, 0, 2))
    assert isinstance(block.conv2[1], torch.nn.BatchNorm2d) and block.conv2[0].bias is None


def test_mh_external_attention_is_the_eamlp_formula():
    block = MultiHeadExternalAttention(64).eval()
    assert block.num_heads == 32 and block.memory_key.out_features == 64
    x = torch.randn(2, 49, 64)
    with torch.no_grad():
        t = block.trans_dims(x).view(2, 49, 32, 8).permute(0, 2, 1, 3)
        attn = (t @ block.memory_key.weight.T + block.memory_key.bias).softmax(dim=2)
        attn = attn / (1e-9 + attn.sum(-1, keepdim=True))
        z = (attn @ block.memory_value.weight.T + block.memory_value.bias).permute(0, 2, 1, 3).reshape(2, 49, 256)
        assert torch.allclose(block(x), block.proj(z), atol=ATOL)


# --- the token adapter -----------------------------------------------------------------------------------

def _tokens_by_hand(x: torch.Tensor) -> torch.Tensor:
    """Token (h, w) is pixel (h, w)'s channel vector, in row-major order of the pixels."""
    b, c, h, w = x.shape
    return torch.stack([x[:, :, i, j] for i in range(h) for j in range(w)], dim=1)  # (B, H*W, C)


def test_tokens_are_one_per_pixel_not_a_bare_reshape():
    x = torch.randn(2, 3, 4, 5)
    tokens = to_tokens(x)
    assert tokens.shape == (2, 20, 3)
    assert torch.equal(tokens, _tokens_by_hand(x))
    assert torch.equal(tokens[1, 2 * 5 + 3], x[1, :, 2, 3])  # token (h=2, w=3) is that pixel's channels
    assert not torch.equal(x.reshape(2, -1, 3), tokens)  # the article's reshape mixes channels and positions


def test_feature_map_blocks_equal_token_blocks():
    module, (x,) = attnzoo.create("vit-attention", (2, 32, 4, 6))
    with torch.no_grad():
        direct = module.block(_tokens_by_hand(x))  # (B, N, C)
        back = torch.zeros(2, 32, 4, 6)
        for n in range(24):  # token n goes back to pixel (n // W, n % W)
            back[:, :, n // 6, n % 6] = direct[:, n]
        torch.testing.assert_close(module(x), back)
