"""Blocks inside networks: network cards, placements found by structure, create_network / attach, and the
network rows of profile (the plain network's row, the deltas, the attention share, MACs against
FlopCounterMode). Whole networks are slow on a small CPU: small inputs, resnet18, --mode infer."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.cli import run
from attnzoo.networks.cards import PLACEMENTS, all_networks, block_placements, choose_placement, get_network
from attnzoo.registry import all_specs

SMALL = "1,3,64,64"
# Parameter counts of the plain networks as torchvision states them (shared/reference/networks.md).
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160, "mobilenet_v2": 3_504_872, "vit-s": 22_050_664}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_network_cards_list_without_torch():
    code = ("import sys, attnzoo; from attnzoo.cli import run; run(['list', '--networks', '--format', 'json']); "
            "run(['info', 'resnet50', '--json']); print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False"
    names = {row["name"] for row in json.loads(result.stdout.split("\n{")[0])}
    assert set(TORCHVISION_PARAMS) <= names


def test_network_cards_are_not_blocks(capsys):
    assert not set(all_networks()) & set(all_specs())
    assert run(["list", "--format", "csv"]) == 0
    assert "resnet50" not in {row["name"] for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}


def test_info_network(capsys):
    assert run(["info", "vit-s"]) == 0
    out = capsys.readouterr().out
    assert "VisionTransformer" in out and "token-mixer" in out and "22,050,664" in out


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "vit-s"])
def test_plain_networks_have_torchvision_parameter_counts(name):
    assert n_params(attnzoo.create_network(name)) == TORCHVISION_PARAMS[name] == get_network(name).params


def test_se_in_resnet50_adds_the_papers_weights():
    # 25,557,032 + 2,530,992 (the SE FCs with their biases: 28.09 M in SENet's and CBAM's tables)
    assert n_params(attnzoo.create_network("resnet50", "se")) == 25_557_032 + 2_530_992


def test_attach_se_to_timm_resnet50_gives_timm_seresnet50():
    timm = pytest.importorskip("timm")
    model = attnzoo.attach(timm.create_model("resnet50"), "se")
    assert n_params(model) == n_params(timm.create_model("seresnet50"))
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


class _Unit(nn.Module):
    """A user's own residual unit: no torchvision or timm class, the layout of a ResNet's basic block."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.downsample = None

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def test_attach_places_by_structure_not_class_name():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Sequential(_Unit(16), _Unit(16)),
                          nn.Sequential(_Unit(16)))
    attnzoo.attach(model, "eca", stages="2", shape=(1, 3, 32, 32))
    placed = [n for n, m in model.named_modules() if type(m).__name__ == "ECA"]
    assert placed == ["2.0.bn2.1"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32, 32)
    attnzoo.attach(model, "sk", "replace-conv", shape=(1, 3, 32, 32))
    assert [type(u.conv2).__name__ for u in (model[1][0], model[1][1], model[2][0])] == ["SelectiveKernel"] * 3


def test_attach_refuses_a_model_without_places_in_one_line():
    with pytest.raises(attnzoo.ConfigError, match="found no place for se in Sequential: looked for residual units"):
        attnzoo.attach(nn.Sequential(nn.Conv2d(3, 8, 3)), "se")


@pytest.mark.slow
@pytest.mark.parametrize("network,block,placement,count", [
    ("resnet18", "cbam", "residual", 8), ("resnet18", "bam", "stage", 3), ("resnet18", "sk", "replace-conv", 8),
    ("mobilenet_v2", "coord-attention", "mobilenet-v2", 16), ("vit-s", "linear-attention", "token-mixer", 12),
    ("vit-s", "cbam", "token-mixer", 12), ("vit-s", "class-attention", "token-mixer", 12)])
def test_placed_blocks_receive_gradients(network, block, placement, count):
    from attnzoo.networks.build import create_network

    placed = create_network(get_network(network), attnzoo.get_spec(block), "1,3,32,32", placement)
    assert placed.placement == placement and len(placed.blocks) == count
    model = placed.model.train()
    for module in model.modules():  # torchvision's ViT starts with a zero head: no gradient would pass it
        if isinstance(module, nn.Linear) and module.out_features == 1000:
            nn.init.normal_(module.weight, std=0.01)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    for name in placed.blocks:
        grads = [p.grad for p in model.get_submodule(name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert not grads or any(g.abs().sum() > 0 for g in grads), name


def test_mobilenet_v2_follows_coordinate_attentions_code():
    model = attnzoo.create_network("mobilenet_v2", "coord-attention", SMALL)
    for i, unit in enumerate(model.features[1:-1], 1):
        kinds = [type(m).__name__ for m in unit.conv]
        if i == 1:  # expand ratio 1: no block
            assert "CoordinateAttention" not in kinds
        else:  # expansion, depthwise, CA, projection, BN
            assert kinds == ["Conv2dNormActivation", "Conv2dNormActivation", "CoordinateAttention", "Conv2d",
                             "BatchNorm2d"]
            hidden = unit.conv[1][0].out_channels
            assert unit.conv[2].channels == hidden if hasattr(unit.conv[2], "channels") else True


def test_stages_limit_the_places_and_stage_defaults_skip_the_last():
    from attnzoo.networks.build import create_network

    bam = create_network(get_network("resnet50"), attnzoo.get_spec("bam"), SMALL)
    assert bam.blocks == ["layer1.1", "layer2.1", "layer3.1"] and bam.stages == [1, 2, 3]
    se = create_network(get_network("resnet50"), attnzoo.get_spec("se"), SMALL, stages="4")
    assert se.blocks == ["layer4.0.bn3.1", "layer4.1.bn3.1", "layer4.2.bn3.1"]


def test_odd_input_sizes_run_or_are_refused():
    model = attnzoo.create_network("resnet18", "cbam", "1,3,200,168").eval()
    assert model(torch.randn(1, 3, 200, 168)).shape == (1, 1000)
    model = attnzoo.create_network("resnet18", "sk", "1,3,201,167").eval()
    assert model(torch.randn(1, 3, 201, 167)).shape == (1, 1000)
    with pytest.raises(attnzoo.ShapeError, match="vit-s takes square images"):
        attnzoo.create_network("vit-s", "mha", "1,3,200,168")
    with pytest.raises(attnzoo.ShapeError, match="multiples of 16"):
        attnzoo.create_network("vit-s", "mha", "1,3,200,200")


def test_every_one_input_block_has_a_network():
    networks = all_networks().values()
    for spec in all_specs().values():
        if spec.inputs == 1:
            assert block_placements(spec), spec.name
            assert any(choose_placement(spec, net)[0] for net in networks), spec.name
        else:
            assert not block_placements(spec) and not choose_placement(spec, get_network("resnet50"))[0]
    assert set(p for net in networks for p in net.placements) == set(PLACEMENTS)


@pytest.mark.slow
def test_network_macs_equal_flop_counter_mode():
    from attnzoo.networks.build import create_network
    from attnzoo.profiling.flops import count_macs, flop_counter_macs

    for network, block in (("resnet18", "cbam"), ("vit-s", "vit-attention"), ("mobilenet_v2", "coord-attention"),
                           ("resnet18", None)):
        placed = create_network(get_network(network), attnzoo.get_spec(block) if block else None, SMALL)
        model = placed.model.eval()
        counted = count_macs(model, placed.inputs)
        assert counted.macs == flop_counter_macs(model, placed.inputs), (network, block)


@pytest.mark.slow
def test_profile_network_rows_with_plain_row_and_deltas():
    frame = attnzoo.profile(["se", "a[f]f"], SMALL, network="resnet18", mode="infer", min_time=0.02, warmup=1,
                            device="cpu")
    rows = frame.to_dict("records")
    assert [r["block"] for r in rows] == ["none", "se", "aff"]
    plain, se, aff = rows
    assert plain["status"] == "ok" and plain["network"] == "resnet18" and plain["params"] == 11_689_512
    assert se["placement"] == "residual" and se["inserted"] == 8 and se["stages"] == "1,2,3,4"
    assert se["added_params"] == se["params"] - plain["params"] == 8 * 0 + 89_080
    assert se["added_macs"] == se["macs"] - plain["macs"] > 0
    assert se["added_fwd_ms"] == pytest.approx(se["fwd_ms"] - plain["fwd_ms"], abs=1e-3)
    assert 0 < se["attn_macs_share"] < 0.01 and 0 < se["attn_time_share"] < 1
    assert aff["status"].startswith("skipped: aff takes 2 inputs")


def test_profile_network_cli_errors_are_one_line(capsys, tmp_path):
    out = tmp_path / "rows.csv"
    cases = [(["profile", "se", "--network", "resnet5", "--shape", SMALL], "did you mean 'resnet50'"),
             (["profile", "se", "--network", "resnet18", "--shape", "1,4,64,64"], "takes B,3,H,W images"),
             (["profile", "se", "--network", "resnet18", "--stages", "5", "--shape", SMALL], "--stages 5 is not"),
             (["profile", "se", "--network", "vit-s", "--placement", "residual", "--shape", SMALL], "not residual"),
             (["profile", "se", "--placement", "residual", "--shape", "1,8,4,4"], "need --network"),
             (["profile", "mha", "--network", "vit-s", "--shape", "1,3,200,168", "-o", str(out)], "square images")]
    for argv, message in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not out.exists()


def test_profile_star_in_a_network_skips_with_why(capsys):
    argv = ["profile", "a*", "--network", "resnet18", "--shape", "1,3,32,32", "--mode", "infer", "--min-time",
            "0.01", "--warmup", "0", "--format", "csv", "--device", "cpu"]
    assert run(argv) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    by_block = {r["block"]: r for r in rows}
    assert rows[0]["block"] == "none" and set(by_block) == {"none", "additive-attention", "aff", "aft-simple",
                                                             "attention-gate", "axial-attention"}
    assert by_block["aft-simple"]["status"].startswith("skipped: aft-simple takes the placements token-mixer")
    assert "skipped" in captured.err


def test_papers_suite_lists_at_least_20_published_entries():
    from attnzoo.profiling.suites import check_blocks, load_suite

    suite = load_suite("papers")
    check_blocks(suite)
    assert len(suite.runs) >= 20
    tables = {run.paper["table"].split(" Table")[0] for run in suite.runs}
    assert {"CBAM", "ECA-Net", "SGE", "SA-Net", "Triplet attention", "SimAM", "Coordinate attention", "EPSANet",
            "ResNeSt", "SKNet", "DeiT", "SENet"} <= tables
    for suite_run in suite.runs:
        assert suite_run.networks and suite_run.shapes == ("1,3,224,224",) and suite_run.paper["gflops"] > 0
        for block in suite_run.blocks:
            assert choose_placement(attnzoo.get_spec(block), get_network(suite_run.networks[0]))[0], suite_run.note


def test_network_units_have_their_own_ids_and_plain_rows_first():
    from attnzoo.profiling.runner import ProfileOptions, plan_units, unit_settings

    options = ProfileOptions(device="cpu", mode="infer").checked()
    units = plan_units(["se", "eca"], [SMALL, "1,3,96,96"], options, networks=["resnet18", "resnet34"])
    assert [(u.network, u.block) for u in units[:3]] == [("resnet18", "none"), ("resnet18", "se"), ("resnet18", "eca")]
    assert len({u.id for u in units}) == len(units) == 2 * 2 * 3
    assert all(u.placement == "residual" for u in units if u.block != "none")
    assert unit_settings(options)["mode"] == "infer"


@pytest.mark.slow
def test_sweep_a_network_over_resolution(capsys):
    argv = ["sweep", "se", "--network", "resnet18", "--hw", "32,64", "--mode", "infer", "--min-time", "0.01",
            "--baseline", "none", "--format", "json", "--device", "cpu"]
    assert run(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["block"], r["shape"]) for r in rows] == [("none", "1,3,32,32"), ("se", "1,3,32,32"),
                                                          ("none", "1,3,64,64"), ("se", "1,3,64,64")]
    assert all(r["network"] == "resnet18" for r in rows) and rows[1]["added_params"] == 89_080
    assert run(["sweep", "se", "--network", "resnet*", "--hw", "32,64"]) == 2
    assert "one network at a time" in capsys.readouterr().err


def _network_row(block, network, fwd, **extra):
    from tests.test_compare import row

    return row(block, "1,3,224,224", fwd=fwd, network=network, placement="residual" if block != "none" else "",
               stages="1,2,3,4" if block != "none" else "", inserted=16 if block != "none" else 0, **extra)


def test_compare_and_report_read_network_rows(tmp_path, capsys):
    from attnzoo.results.compare import compare
    from tests.test_compare import write_csv

    # the same block in two networks: two pairs, told apart by the network
    base = [_network_row("none", "resnet50", 10.0), _network_row("se", "resnet50", 11.0),
            _network_row("se", "resnet18", 5.0)]
    new = [_network_row("none", "resnet50", 10.0), _network_row("se", "resnet50", 22.0),
           _network_row("se", "resnet18", 5.0)]
    result = compare(base, new, ["fwd_ms"])
    verdicts = {(r["network"], r["block"]): r["verdict"] for r in result.rows}
    assert verdicts == {("resnet50", "none"): "same", ("resnet50", "se"): "slower", ("resnet18", "se"): "same"}
    path = write_csv(tmp_path / "rows.csv", [{**r, "added_fwd_ms": 1.0} for r in base])
    page = tmp_path / "report.html"
    assert run(["report", path, "-o", str(page)]) == 0
    html = page.read_text()
    assert "<th data-type=\"text\">network</th>" in html and "resnet18" in html and "added_fwd_ms" in html


@pytest.mark.slow
def test_shards_of_a_network_run_merge_with_their_deltas(tmp_path, capsys):
    common = ["profile", "eca", "se", "--network", "resnet18", "--shape", "1,3,32,32", "--mode", "infer",
              "--min-time", "0.01", "--warmup", "0", "--device", "cpu"]
    parts = [tmp_path / "part1.csv", tmp_path / "part2.csv"]
    for i, part in enumerate(parts, 1):
        assert run([*common, "--shard", f"{i}/2", "-o", str(part)]) == 0
    merged = tmp_path / "all.csv"
    assert run(["merge", str(merged), *map(str, parts)]) == 0
    rows = {r["block"]: r for r in csv.DictReader(open(merged, newline=""))}
    assert set(rows) == {"none", "eca", "se"}
    for block in ("eca", "se"):
        assert int(rows[block]["added_params"]) == int(rows[block]["params"]) - int(rows["none"]["params"]) > 0


def test_a_named_block_the_network_cannot_hold_is_a_skipped_row_with_the_runs_settings():
    """Issue 31, item 5: 'aff' named (no wildcard) in resnet18 was an error that ended the run; it is a
    skipped row saying why, with the run's threads (not torch's), and the other blocks are still planned."""
    from attnzoo.campaign.executors import RunContext
    from attnzoo.profiling.runner import ProfileOptions, plan_units, run_unit

    options = ProfileOptions(device="cpu", mode="infer", min_time=0.01, warmup=0, threads=1).checked()
    units = plan_units(["aff", "se"], ["1,3,32,32"], options, networks=["resnet18"])
    assert [u.block for u in units] == ["none", "aff", "se"]
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's threads differ from the run's: the skipped row must say the run's
    try:
        row = run_unit(units[1], RunContext())
    finally:
        torch.set_num_threads(saved)
    assert row["status"].startswith("skipped: aff takes 2 inputs")
    assert row["network"] == "resnet18" and row["threads"] == 1 and row["mode"] == "infer"
