from __future__ import annotations

import pytest

import torch

import attnzoo
from attnzoo import api
from attnzoo.profiling import runner
from attnzoo.build import evaluate, parse_override, parse_shape, resolve_args, shape_symbols
from attnzoo.errors import CardError, ConfigError, ShapeError, UnknownBlockError
from attnzoo.registry import FAMILIES, LAYOUTS, all_specs, bundled_registry_dir, load_card

CORE = {"sdpa", "mha", "vit-attention", "conv-mha", "cbam", "se", "external-attention", "mh-external-attention"}

GOOD_CARD = """
name = "torch-mha"
title = "torch.nn.MultiheadAttention"
paper = "Vaswani et al., Attention Is All You Need, NeurIPS 2017"
url = "https://arxiv.org/abs/1706.03762"
family = "self-attention"
layout = "BNC"
target = "torch.nn:MultiheadAttention"
complexity = "O(N^2*C)"
repeat_input = 3
[args]
embed_dim = "C"
num_heads = 4
batch_first = true
[forward_args]
need_weights = false
"""


def test_core_blocks_are_registered():
    names = {spec.name for spec in attnzoo.list_blocks()}
    assert CORE <= names


def test_every_bundled_card_is_valid():
    specs = all_specs()
    assert specs
    for spec in specs.values():
        assert spec.family in FAMILIES and spec.layout in LAYOUTS
        assert spec.source.startswith(str(bundled_registry_dir()))


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownBlockError, match="did you mean 'cbam'"):
        attnzoo.get_spec("cbma")


def test_wildcards_and_filters():
    assert {s.name for s in attnzoo.list_blocks("*external*")} >= {"external-attention", "mh-external-attention"}
    assert all(s.family == "channel" for s in attnzoo.list_blocks(family="channel"))
    assert all(s.layout == "BNC" for s in attnzoo.list_blocks(layout="bnc"))
    with pytest.raises(ConfigError, match="unknown family 'nope'") as info:
        attnzoo.list_blocks(family="nope")
    assert not isinstance(info.value, UnknownBlockError)  # a bad filter, not a block name


def test_user_folder_adds_a_card_targeting_torch(tmp_path):
    (tmp_path / "torch-mha.toml").write_text(GOOD_CARD)
    spec = attnzoo.get_spec("torch-mha", [tmp_path])
    assert spec.target == "torch.nn:MultiheadAttention"
    module, (x,) = attnzoo.create("torch-mha", (2, 16, 4, 4), registry=[tmp_path])
    assert x.shape == (2, 16, 4, 4)
    mha = module.block.block  # the token adapter around the call adapter around torch's module
    tokens = x.flatten(2).transpose(1, 2)
    expected = mha(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).reshape(2, 16, 4, 4)
    assert torch.allclose(module(x), expected)


def test_user_card_targeting_torch_profiles(tmp_path):
    (tmp_path / "torch-mha.toml").write_text(GOOD_CARD)
    (row,) = list(api.profile_rows(["torch-mha"], ["2,16,8,8"], runner.ProfileOptions(mode="infer", min_time=0.01),
                                      registry=[tmp_path]))
    assert row["status"] == "ok"
    assert row["macs"] == 2 * (4 * 64 * 16 ** 2 + 2 * 64 ** 2 * 16)  # B * (4 N C^2 + 2 N^2 C)


def test_environment_variable_adds_folders(tmp_path, monkeypatch):
    (tmp_path / "torch-mha.toml").write_text(GOOD_CARD)
    monkeypatch.setenv("ATTNZOO_REGISTRY", str(tmp_path))
    assert "torch-mha" in {s.name for s in attnzoo.list_blocks()}


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('family = "self-attention"', 'family = "magic"'), "field 'family'"),
    (lambda t: t.replace('layout = "BNC"', 'layout = "NHWC"'), "field 'layout'"),
    (lambda t: t.replace('target = "torch.nn:MultiheadAttention"', 'target = "torch.nn.MultiheadAttention"'), "field 'target'"),
    (lambda t: t.replace('url = "https://arxiv.org/abs/1706.03762"\n', ''), "missing field 'url'"),
    (lambda t: t.replace('[args]', 'colour = "red"\n[args]'), "unknown field"),
    (lambda t: t.replace('title = "torch.nn.MultiheadAttention"', 'title = 3'), "field 'title'"),
    (lambda t: t + "\n[[[", "not valid TOML"),
    (lambda t: t.replace("repeat_input = 3", "repeat_input = 0"), "repeat_input"),
])
def test_bad_cards_are_reported_by_file_and_field(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD_CARD))
    with pytest.raises(CardError, match=message) as info:
        load_card(path)
    assert str(path) in str(info.value)


def test_duplicate_names_are_an_error(tmp_path):
    (tmp_path / "a.toml").write_text(GOOD_CARD.replace('"torch-mha"', '"cbam"'))
    with pytest.raises(CardError, match="duplicate block name 'cbam'"):
        attnzoo.list_blocks(extra_dirs=[tmp_path])


def test_missing_registry_folder_is_an_error(tmp_path):
    with pytest.raises(CardError, match="not found"):
        attnzoo.list_blocks(extra_dirs=[tmp_path / "absent"])


@pytest.mark.parametrize("text, dims", [("128,256,24,24", (128, 256, 24, 24)), ("2x64x8x8", (2, 64, 8, 8)),
                                        ("50, 49, 512", (50, 49, 512))])
def test_parse_shape(text, dims):
    assert parse_shape(text) == dims


@pytest.mark.parametrize("text", ["1,2", "a,b,c", "1,2,3,4,5", "2,0,4,4", "", "2,64,x,8", "2,64,,8", "2,-4,8,8"])
def test_malformed_shapes_are_refused(text):
    with pytest.raises(ShapeError):
        parse_shape(text)


def test_card_expressions_use_the_shape():
    symbols = shape_symbols((2, 64, 8, 6))
    assert symbols == {"B": 2, "C": 64, "H": 8, "W": 6, "N": 48}
    assert evaluate("C//2", symbols) == 32 and evaluate("H*W", symbols) == 48
    assert shape_symbols((2, 49, 512))["H"] == 7
    assert "H" not in shape_symbols((2, 50, 512))
    spec = attnzoo.get_spec("mha")
    assert resolve_args(spec, (2, 64, 8, 8))["dim"] == 64
    assert resolve_args(spec, (2, 64, 8, 8), {"num_heads": 4})["num_heads"] == 4


@pytest.mark.parametrize("text, pair", [("reduction=8", ("reduction", 8)), ("no_spatial=true", ("no_spatial", True)),
                                        ("dropout=0.0", ("dropout", 0.0)), ("pool_types=[\"avg\"]", ("pool_types", ["avg"])),
                                        ("mode=l1", ("mode", "l1"))])
def test_parse_override(text, pair):
    assert parse_override(text) == pair


def test_bad_override_and_bad_shape_for_block():
    with pytest.raises(ConfigError):
        parse_override("reduction")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        attnzoo.create("cbam", (2, 64, 8, 8), colour=3)
    with pytest.raises(ShapeError, match="divisible by num_heads"):
        attnzoo.create("mha", (2, 250, 8, 8))
    with pytest.raises(ShapeError, match="feature maps"):
        attnzoo.create("cbam", (2, 64, 8))


def test_token_blocks_take_tokens_and_feature_maps():
    module, (x,) = attnzoo.create("mha", (2, 49, 32))
    assert module(x).shape == (2, 49, 32)
    module, (x,) = attnzoo.create("mha", (2, 32, 7, 7))
    assert module(x).shape == (2, 32, 7, 7)
