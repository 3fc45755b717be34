"""``--network timm:NAME``: any timm model by name, built without weights, is a network row like the others.

Parameter counts are checked against timm's own model (built by timm, counted here) and against the count timm's
results file publishes (profiles/published/timm-imagenet.toml, from accuracy.md), for a sample of models.
"""

from __future__ import annotations

import sys
import tomllib

import pytest

import attnzoo
from attnzoo.cli import run
from attnzoo.errors import ConfigError, UnknownBlockError
from attnzoo.networks.cards import get_network, resolve_networks, timm_network
from attnzoo.profiling.suites import bundled_profiles_dir

timm = pytest.importorskip("timm")

PUBLISHED = {e["model"]: e for e in tomllib.loads((bundled_profiles_dir() / "published" / "timm-imagenet.toml")
                                                   .read_text())["entries"]}
SAMPLE = ["resnet50.a1_in1k", "seresnet33ts.ra2_in1k", "eca_resnet33ts.ra2_in1k", "gcresnet33ts.ra2_in1k",
          "skresnext50_32x4d.ra_in1k", "legacy_seresnet18.in1k"]


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", SAMPLE)
def test_a_timm_network_has_timms_parameter_count(name):
    ours = attnzoo.create_network(f"timm:{name}")
    theirs = timm.create_model(name, pretrained=False)
    assert _count(ours) == _count(theirs)
    assert round(_count(ours) / 1e6, 2) == PUBLISHED[name]["params_m"]  # timm's results file, as published


def test_the_tag_sets_the_cards_input_and_no_weights_are_loaded(monkeypatch):
    card = get_network("timm:seresnet33ts.ra2_in1k")
    assert card.name == "timm:seresnet33ts.ra2_in1k" and card.input == "1,3,256,256"
    assert get_network("timm:resnet50").input == "1,3,224,224"
    assert "residual" in get_network("timm:resnet50").placements

    def no_download(*args, **kwargs):
        raise AssertionError("weights were asked for")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_download)
    attnzoo.create_network("timm:resnet18.a1_in1k", shape="1,3,64,64")


def test_a_block_goes_into_a_timm_resnet():
    plain = attnzoo.create_network("timm:resnet18", shape="1,3,64,64")
    with_se = attnzoo.create_network("timm:resnet18", "se", shape="1,3,64,64")
    assert _count(with_se) > _count(plain)
    assert sum(type(m).__module__ == "attnzoo.blocks.se" for m in with_se.modules()) == 8  # one per basic block


def test_a_timm_network_is_a_row_like_the_others():
    frame = attnzoo.profile([], "1,3,64,64", network="timm:resnet18", mode="infer", min_time=0.01, warmup=1)
    row = frame.iloc[0]
    assert row["network"] == "timm:resnet18" and row["block"] == "none" and row["status"] == "ok"
    assert row["params"] == _count(timm.create_model("resnet18", pretrained=False))
    assert row["macs"] > 0 and row["fwd_ms"] > 0


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_unknown_timm_name_is_one_line_with_the_closest_names(capsys):
    assert run(["profile", "--network", "timm:seresnet5", "--shape", "1,3,224,224"]) == 2
    line = _one_error_line(capsys)
    assert "unknown timm model 'seresnet5'" in line and "'timm:seresnet50'" in line
    assert run(["profile", "--network", "timm:resnet50.no_such_tag", "--shape", "1,3,224,224"]) == 2
    assert "a1_in1k" in _one_error_line(capsys)
    with pytest.raises(UnknownBlockError):
        get_network("timm:")
    with pytest.raises(ConfigError, match="wildcards"):
        resolve_networks(["timm:resnet*"])


def test_without_timm_a_timm_name_is_one_line_naming_the_extra(monkeypatch, capsys):
    timm_network.cache_clear()
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    try:
        assert run(["profile", "--network", "timm:resnet50", "--shape", "1,3,224,224"]) == 2
        line = _one_error_line(capsys)
        assert "timm" in line and "pip install 'attnzoo[timm]'" in line
    finally:
        timm_network.cache_clear()
