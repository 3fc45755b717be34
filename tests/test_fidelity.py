"""Fidelity to the official code (issue 14): each departure an audit found is fixed or offered, and checked
here against the official arithmetic, written out in the test or taken from timm's layers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.blocks.attention_gate import AttentionGate
from attnzoo.blocks.cait import ClassAttention
from attnzoo.blocks.external import ExternalAttention
from attnzoo.blocks.routing import RoutingAttention
from attnzoo.blocks.self_attention import MultiHeadAttention, ViTAttention
from attnzoo.blocks.xcit import CrossCovarianceAttention
from attnzoo.build import stated_macs
from attnzoo.profiling.flops import count_macs

ATOL, RTOL = 1e-5, 1e-4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- 1. external attention: the official code's tied memories ---------------------------------------------

class _OfficialEANet(nn.Module):
    """The arithmetic of MenghaoGuo/EANet model_torch.py's External_attention, with M_v made a transposed view
    of M_k's storage as the official constructor does; the weights are copied from an attnzoo block."""

    def __init__(self, block: ExternalAttention):
        super().__init__()
        channels, slots = block.memory_key.in_channels, block.memory_key.out_channels
        self.conv1 = copy.deepcopy(block.conv1)
        self.linear_0 = nn.Conv1d(channels, slots, 1, bias=False)
        self.linear_1 = nn.Conv1d(slots, channels, 1, bias=False)
        self.linear_1.weight.data = self.linear_0.weight.data.permute(1, 0, 2)  # shared storage
        with torch.no_grad():
            self.linear_0.weight.copy_(block.memory_key.weight)  # in place: linear_1 sees it too
        self.conv2 = copy.deepcopy(block.conv2)

    def forward(self, x):
        idn = x
        x = self.conv1(x)
        b, c, h, w = x.shape
        attn = F.softmax(self.linear_0(x.view(b, c, h * w)), dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        x = self.linear_1(attn).view(b, c, h, w)
        return F.relu(self.conv2(x) + idn)


def test_tied_external_attention_is_the_official_block_and_stays_tied():
    ours = ExternalAttention(16, memory_size=8, tie_memories=True)
    official = _OfficialEANet(ours)
    assert ours.memory_value is None and n_params(ours) == n_params(ExternalAttention(16, 8)) - 16 * 8
    x, target = torch.randn(2, 16, 5, 7), torch.randn(2, 16, 5, 7)
    ours.eval(), official.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), atol=ATOL, rtol=RTOL)
    # One SGD step on each: the official two parameters on one storage against attnzoo's one parameter.
    ours.train(), official.train()
    for module in (ours, official):
        optimiser = torch.optim.SGD(module.parameters(), lr=0.5)
        (module(x) * target).sum().backward()
        optimiser.step()
    assert torch.equal(official.linear_1.weight, official.linear_0.weight.permute(1, 0, 2))  # official: tied
    torch.testing.assert_close(ours.memory_key.weight, official.linear_0.weight, atol=ATOL, rtol=RTOL)
    assert torch.equal(ours.value_weight(), ours.memory_key.weight.permute(1, 0, 2))
    ours.eval(), official.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), atol=ATOL, rtol=RTOL)


def test_untied_external_attention_keeps_two_memories():
    block = ExternalAttention(16, memory_size=8)  # the paper's default
    x = torch.randn(2, 16, 5, 7)
    optimiser = torch.optim.SGD(block.parameters(), lr=0.5)
    (block(x) * torch.randn_like(x)).sum().backward()
    optimiser.step()
    assert not torch.allclose(block.memory_value.weight, block.memory_key.weight.permute(1, 0, 2))


@pytest.mark.parametrize("tie", [False, True])
def test_external_attention_starts_as_the_official_memory(tie):
    # The official init loop draws M_v (fan_out = C) last into the shared storage: std sqrt(2 / C).
    block = ExternalAttention(256, memory_size=64, tie_memories=tie)
    std = block.memory_key.weight.std().item()
    assert abs(std / math.sqrt(2.0 / 256) - 1) < 0.05, std
    assert torch.equal(block.value_weight(), block.memory_key.weight.permute(1, 0, 2))


def test_external_attention_card_offers_tied_memories():
    module, (x,) = attnzoo.create("external-attention", (2, 32, 6, 6), tie_memories=True)
    assert module.memory_value is None and module(x).shape == x.shape


# --- 2. xca and class attention: the qkv bias of every XCiT and CaiT model ------------------------------------

def test_xca_default_is_the_xcit_models_layer():
    xcit = pytest.importorskip("timm.models.xcit")
    model = xcit.Xcit(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=4, cls_attn_layers=1)
    ref = model.blocks[0].attn.eval()
    assert ref.qkv.bias is not None
    ours = CrossCovarianceAttention(32, num_heads=4).eval()
    ours.load_state_dict(ref.state_dict())  # strict: fails unless the default has the bias too
    with torch.no_grad():
        ref.temperature.uniform_(0.5, 2.0)
        ref.qkv.bias.normal_()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, 20, 32)
        torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    assert attnzoo.create("xca", (2, 32, 4, 4))[0].block.qkv.bias is not None


def test_class_attention_default_is_the_cait_models_layer():
    cait = pytest.importorskip("timm.models.cait")
    model = cait.Cait(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=4, depth_token_only=1)
    ref = model.blocks_token_only[0].attn.eval()
    assert ref.q.bias is not None
    ours = ClassAttention(32, num_heads=4, class_token=False).eval()
    with torch.no_grad():
        for layer in (ref.q, ref.k, ref.v):
            layer.bias.normal_()
        ours.load_state_dict(ref.state_dict())  # strict
        x = torch.randn(2, 1 + 12, 32)
        torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)
    assert attnzoo.create("class-attention", (2, 32, 4, 4))[0].block.k.bias is not None


# --- 3. vit-attention: the original ViT's biases ------------------------------------------------------------

def test_vit_attention_with_both_biases_is_timms_vision_transformer_layer():
    vit = pytest.importorskip("timm.models.vision_transformer")
    model = vit.VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=4)
    ref = model.blocks[0].attn.eval()
    ours = ViTAttention(32, num_heads=4, qkv_bias=True, proj_bias=True).eval()
    with torch.no_grad():
        ref.qkv.bias.normal_()
        ref.proj.bias.normal_()
        ours.load_state_dict(ref.state_dict())  # strict: both biases on both sides
        x = torch.randn(2, 9, 32)
        torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=RTOL)


# --- 4. mha: the article's attention dropout ---------------------------------------------------------------

def test_mha_drops_the_attention_weights_as_the_repository_with_attn_dropout():
    block = MultiHeadAttention(32, num_heads=4, attn_dropout=0.1, fused=False).train()
    assert block.dropout.p == 0.1
    x = torch.randn(2, 10, 32)
    torch.manual_seed(7)
    out = block(x)
    # The article's arithmetic: q, k, v, softmax(q k^T / sqrt(d_k)), dropout 0.1 on the weights, weighted sum,
    # fc, dropout 0.1, residual, LayerNorm; the same random stream, drawn in the same order.
    with torch.no_grad():
        split = lambda t: t.view(2, 10, 4, 8).transpose(1, 2)  # noqa: E731
        q, k, v = split(block.w_qs(x)), split(block.w_ks(x)), split(block.w_vs(x))
        torch.manual_seed(7)
        attn = F.dropout(torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1), 0.1, training=True)
        merged = (attn @ v).transpose(1, 2).reshape(2, 10, 32)
        expected = block.layer_norm(F.dropout(block.fc(merged), 0.1, training=True) + x)
    torch.testing.assert_close(out.detach(), expected, atol=ATOL, rtol=RTOL)


def test_mha_fused_path_passes_the_attention_dropout_in_training_only():
    block = MultiHeadAttention(32, num_heads=4, dropout=0.0, attn_dropout=1.0, fused=True)
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        dropped = block.train()(x)  # every weight dropped: the attention output is 0
        torch.testing.assert_close(dropped, block.layer_norm(x), atol=ATOL, rtol=RTOL)
        kept = block.eval()(x)
        reference = MultiHeadAttention(32, num_heads=4, attn_dropout=0.0, fused=False).eval()
        reference.load_state_dict(block.state_dict())
        torch.testing.assert_close(kept, reference(x), atol=ATOL, rtol=RTOL)
    # The first article's code as printed: ScaledDotProductAttention(attn_dropout=0.0), none passed.
    assert attnzoo.create("mha", (2, 32, 4, 4))[0].block.attn_dropout == 0.0
    assert MultiHeadAttention(32).attn_dropout == 0.0


# --- 5. routing attention: the port's mean commitment loss ------------------------------------------------

def test_routing_aux_loss_is_the_ports_mse_loss():
    block = RoutingAttention(32, num_heads=4, num_clusters=3, commitment=1e-4).train()
    centroids = block.centroids.clone()  # the forward moves them afterwards
    x = torch.randn(2, 12, 32)
    block(x)
    with torch.no_grad():
        q, k, _ = block.qkv(x).view(2, 12, 3, 4, 8).permute(2, 0, 3, 1, 4)  # (B, heads, N, head_dim) each
        points = F.normalize(torch.cat([q, k], dim=2), dim=-1)  # the port's Kmeans input, normalised
        buckets = torch.einsum("bhld,hcd->bhlc", points, centroids).argmax(-1)  # nearest centroid
        routed = centroids[torch.arange(4)[:, None], buckets]  # (B, heads, 2N, head_dim)
        expected = F.mse_loss(points, routed) * 1e-4
    torch.testing.assert_close(block.aux_loss.detach(), expected, atol=1e-12, rtol=1e-5)


# --- 6. stated MACs away from the cards' defaults ----------------------------------------------------------

OFF_DEFAULTS = [
    ("deformable-conv", (1, 16, 7, 9), {"modulated": True}),
    ("deformable-conv", (1, 16, 7, 9), {"kernel_size": 5}),
    ("cbam", (1, 32, 7, 9), {"no_spatial": True}),
    ("gsa", (1, 32, 9, 10), {"sr_ratio": 1}),
    ("gsa", (1, 32, 9, 10), {"sr_ratio": 3}),
    ("lsa", (1, 32, 9, 10), {"window_size": 4}),
    ("residual-attention", (1, 16, 9, 11), {"depth": 1}),
    ("residual-attention", (1, 16, 9, 11), {"depth": 2, "r": 2, "t": 1}),
    ("sk", (1, 48, 7, 9), {}),
    ("sk", (1, 64, 7, 9), {"groups": 48, "num_paths": 3}),
    ("bam", (1, 24, 7, 9), {"reduction": 8}),
    ("bilinear-attention", (1, 48, 7, 9), {"reduction": 8}),
    ("rga-s", (1, 24, 5, 7), {"down_ratio": 2}),
    ("rga-c", (1, 24, 5, 7), {"cha_ratio": 4}),
    ("sparse-attention", (1, 32, 7, 9), {"stride": 5}),
    ("routing-attention", (1, 32, 7, 9), {"num_clusters": 4}),
    ("class-attention", (1, 32, 7, 9), {"class_token": False}),
    ("mh-external-attention", (1, 32, 7, 9), {"coef": 2}),
    ("conv-mha", (1, 16, 7, 9), {"key_size": 8, "output_size": 12}),
    ("attention-gate", (1, 16, 7, 9), {}),
    ("ms-cam", (1, 8, 7, 9), {"reduction": 16}),
]


@pytest.mark.parametrize("name, shape, overrides", OFF_DEFAULTS,
                         ids=[f"{n}-{','.join(f'{k}={v}' for k, v in o.items())}" for n, _, o in OFF_DEFAULTS])
def test_stated_macs_hold_off_the_card_defaults(name, shape, overrides):
    module, inputs = attnzoo.create(name, shape, **overrides)
    module.eval()
    counted = count_macs(module, inputs)
    assert not counted.uncounted
    assert stated_macs(attnzoo.get_spec(name), shape, overrides) == counted.macs


def test_se_formula_is_the_two_fc_layers():
    # The old docstring's "N C + 2 C^2 / r": pooling and scaling are not multiply-adds, so the count is flat in N.
    spec = attnzoo.get_spec("se")
    assert stated_macs(spec, (1, 64, 8, 8)) == stated_macs(spec, (1, 64, 32, 32)) == 2 * 64 * 4


# --- 7. attention gate: the official Kaiming initialisation -------------------------------------------------

def test_attention_gate_initialises_as_the_official_code():
    gate = AttentionGate(128, 256)
    # kaiming_normal_(a=0, mode="fan_in"): std sqrt(2 / fan_in) for every convolution weight.
    for conv in (gate.theta, gate.phi, gate.W[0]):
        fan_in = conv.weight[0].numel()
        ratio = conv.weight.std().item() / math.sqrt(2.0 / fan_in)
        assert abs(ratio - 1) < 0.05, (conv, ratio)
    bn = gate.W[1]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and 0.01 < bn.weight.std().item() < 0.03
    assert torch.equal(bn.bias, torch.zeros(128))
    default = AttentionGate(128, 256, init="default")  # PyTorch's: std sqrt(1 / (3 fan_in))
    assert abs(default.theta.weight.std().item() / math.sqrt(2.0 / 512) - 1) > 0.3
    with pytest.raises(ValueError, match="init"):
        AttentionGate(8, 16, init="xavier")
