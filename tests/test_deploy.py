"""--runtime: every card exported and run in ONNX Runtime and checked against eager float32; OpenVINO and
torch.export on a sample of families; a network with its blocks placed; the files --export-dir keeps; a planted
divergence failing the parity check; bad inputs as one line. Skipped, saying why, where the deploy extra is not
installed or torch is older than the runtimes need (the floor, 2.3.1, has no torch.onnx.export(dynamo=True))."""

from __future__ import annotations

import json
import sys

import pytest

import attnzoo
from attnzoo.cli import run
from attnzoo.errors import ConfigError
from attnzoo.modes import check_runtime


def _missing(runtime: str) -> str | None:
    try:
        check_runtime(runtime)
    except ConfigError as exc:
        return str(exc)
    return None


needs_ort = pytest.mark.skipif(_missing("onnxruntime") is not None, reason=str(_missing("onnxruntime")))
needs_openvino = pytest.mark.skipif(_missing("openvino") is not None, reason=str(_missing("openvino")))
needs_export = pytest.mark.skipif(_missing("torch.export") is not None, reason=str(_missing("torch.export")))

CARDS = attnzoo.list_blocks()
NAMES = [spec.name for spec in CARDS]
SHAPE = (1, 64, 16, 16)  # every card takes it (tests/test_cards.py's SMALL, one image)

#: The cards whose ONNX Runtime row fails at SHAPE, with what the row must name (an operator or the runtime's
#: error). None today: every card exports and matches eager within 1e-4. A card that starts failing, or one
#: listed here that starts passing, fails its test: update the set and docs/deploy.md (benchmarks/deploy.py).
ORT_FAILURES: dict[str, str] = {}
#: The cards torch.onnx.export(dynamo=True) refuses (the TorchScript exporter takes them), with the operator
#: its reason names: its SDPA translation takes only 4-D query, key and value, and these call it on 3-D ones.
DYNAMO_REFUSES = {name: "aten::scaled_dot_product_attention"
                  for name in ("danet", "dot-product", "general-attention", "lsa", "non-local", "sdpa")}


def _options(runtime: str, **extra):
    from attnzoo.profiling.runner import ProfileOptions

    return ProfileOptions(device="cpu", mode="infer", min_time=0.01, warmup=1, threads=1, runtime=runtime,
                          **extra).checked()


def _row(name: str, runtime: str, shape=SHAPE, **extra):
    from attnzoo.profiling.runner import profile_one
    from attnzoo.registry import get_spec

    return profile_one(get_spec(name), shape, _options(runtime, **extra))


def _skip_dynamic_check(monkeypatch):
    """The per-card test checks the export and the parity at one size; the dynamic H/W check (a second
    export) is tested on a sample below, to keep every card's test short."""
    from attnzoo.profiling import runtimes

    monkeypatch.setattr(runtimes, "dynamic_check", lambda *args, **kwargs: "not checked")


@needs_ort
@pytest.mark.parametrize("spec", CARDS, ids=NAMES)
def test_every_card_exports_and_matches_eager_in_onnxruntime(spec, monkeypatch):
    from attnzoo.build import create

    _skip_dynamic_check(monkeypatch)
    row = _row(spec.name, "onnxruntime")
    assert row["runtime"] == "onnxruntime"
    if spec.name in ORT_FAILURES:
        assert row["status"].startswith("error:"), row["status"]
        assert ORT_FAILURES[spec.name] in row["status"]
        return
    assert row["status"] == "ok", row["status"]
    assert row["export"] == "ok"
    assert row["rel_err"] is not None and row["rel_err"] <= 1e-4  # a runtime row is judged, never the reference
    assert row["nonfinite"] == 0
    if spec.name in DYNAMO_REFUSES:  # the fallback took it, and says why dynamo did not
        assert row["exporter"].startswith("torchscript (dynamo: ")
        assert DYNAMO_REFUSES[spec.name] in row["exporter"]
    else:
        assert row["exporter"] == "dynamo"
    assert row["opset"] >= 17
    ops = dict(item.rsplit(":", 1) for item in row["onnx_ops"].split())
    assert ops and all(int(n) > 0 for n in ops.values())
    assert row["export_s"] > 0 and row["fwd_ms"] > 0 and row["fwd_runs"] > 0
    assert row["fwd_peak_mib"] is None  # ONNX Runtime allocates on its own: not reported as eager's figure
    module, _ = create(spec, SHAPE)
    assert row["params"] == sum(p.numel() for p in module.parameters())  # the block's, as in an eager row
    assert row["macs"] is not None


@needs_ort
def test_a_planted_divergence_fails_the_parity_check(monkeypatch):
    from attnzoo.profiling import runtimes

    _skip_dynamic_check(monkeypatch)
    honest = runtimes.RuntimeModule.forward

    def perturbed(scale):
        def forward(self, *inputs):
            out = honest(self, *inputs)
            return out + scale * out.abs().max()
        return forward

    monkeypatch.setattr(runtimes.RuntimeModule, "forward", perturbed(1e-3))
    row = _row("cbam", "onnxruntime")
    assert row["status"].startswith("error: onnxruntime output differs from eager float32")
    assert row["rel_err"] > 1e-4
    assert row["fwd_ms"] is not None  # the failed row keeps what was measured
    monkeypatch.setattr(runtimes.RuntimeModule, "forward", perturbed(1e-6))  # under the limit: passes
    assert _row("cbam", "onnxruntime")["status"] == "ok"
    monkeypatch.setattr(runtimes.RuntimeModule, "forward", perturbed(float("nan")))
    assert "NaN/inf" in _row("cbam", "onnxruntime")["status"]


def test_parity_reads_the_error_columns():
    from attnzoo.profiling.runtimes import parity

    options = _options("eager")
    assert parity({"status": "ok", "rel_err": 1.0}, options) is None  # eager is the reference
    ort = type("O", (), {"runtime": "onnxruntime", "dtype": "float32"})()
    assert parity({"status": "ok", "rel_err": 5e-5, "nonfinite": 0}, ort) is None
    assert "rel err 0.0002 > 0.0001" in parity({"status": "ok", "rel_err": 2e-4, "nonfinite": 0}, ort)
    assert "could not be compared" in parity({"status": "ok", "rel_err": None, "nonfinite": 0}, ort)
    assert parity({"status": "error: export failed: x", "rel_err": None}, ort) is None  # already failed


def test_an_operator_is_named_from_exporters_messages():
    from attnzoo.profiling.runtimes import operator_in, reason

    assert operator_in("Exporting the operator 'aten::linalg_qr' to ONNX opset version 18 is not supported") \
        == "aten::linalg_qr"
    assert operator_in("Unsupported FX nodes: {'call_function': ['torchvision.deform_conv2d.default']}") \
        == "torchvision::deform_conv2d"
    assert operator_in("-- No conversion rule found for operations: DeformConv-20") == "DeformConv-20"
    summary = ("Failed to convert the exported program to an ONNX model. This is step 3/3\n## Exception summary\n\n"
               "<class 'AssertionError'>: only 4D query, key, and value are supported\n"
               "target=torch.ops.aten.scaled_dot_product_attention.default")
    assert reason(RuntimeError(summary)) == ("aten::scaled_dot_product_attention: only 4D query, key, and value are "
                                             "supported")


@needs_ort
def test_a_block_no_exporter_takes_is_a_row_and_the_run_goes_on(tmp_path, capsys):
    (tmp_path / "qr-gate.toml").write_text(
        'name = "qr-gate"\ntitle = "QR gate"\npaper = "a test, 2026"\nurl = "https://example.org"\n'
        'family = "channel"\nlayout = "BCHW"\ntarget = "tests.deploy_blocks:QRGate"\ncomplexity = "O(N*C^2)"\n'
        'macs_exponent = 1\n[args]\nchannels = "C"\n')
    code = run(["profile", "qr-gate", "se", "--shape", "1,16,8,8", "--runtime", "onnxruntime", "--registry",
                str(tmp_path), "--min-time", "0.01", "--warmup", "1", "--format", "json"])
    captured = capsys.readouterr()
    rows = {row["block"]: row for row in json.loads(captured.out)}
    assert code == 1  # a failed row, as for any other
    assert rows["se"]["status"] == "ok" and rows["se"]["export"] == "ok"
    qr = rows["qr-gate"]
    assert qr["status"].startswith("error: export failed: dynamo: ")
    assert "linalg_qr" in qr["export"] and "torchscript: " in qr["export"]  # both exporters' reasons, one line
    assert "\n" not in qr["status"]
    assert "qr-gate at 1,16,8,8: error: export failed" in captured.err


@needs_openvino
@pytest.mark.slow
@pytest.mark.parametrize("name", ["se", "cbam", "mha", "halo-attention", "external-attention", "deformable-conv"])
def test_openvino_on_a_sample_of_families(name):
    row = _row(name, "openvino")
    assert row["runtime"] == "openvino" and row["runtime_version"]
    if name == "deformable-conv":  # ONNX has DeformConv (opset 19), OpenVINO's ONNX reader converts none
        assert row["status"].startswith("error: openvino session failed")
        assert "DeformConv" in row["status"] and row["export"] == "ok"
        return
    assert row["status"] == "ok", row["status"]
    assert row["rel_err"] <= 1e-4 and row["fwd_ms"] > 0 and row["fwd_peak_mib"] is None
    assert row["dynamic_hw"] == "yes"


@needs_export
@pytest.mark.slow
@pytest.mark.parametrize("name,shape,dynamic", [
    ("se", SHAPE, "yes"), ("mha", SHAPE, "yes"), ("axial-attention", SHAPE, "n/a"), ("deformable-conv", SHAPE, "yes"),
    ("halo-attention", (1, 32, 8, 8), "specialised"),  # one 8x8 block a side: the program is guarded to W // 8 == 1
])
def test_torch_export_on_a_sample_of_families(name, shape, dynamic):
    row = _row(name, "torch.export", shape)
    assert row["status"] == "ok", row["status"]
    assert row["exporter"] == "torch.export" and row["opset"] is None and row["onnx_ops"] is None
    assert row["rel_err"] is not None and row["rel_err"] <= 1e-4
    assert row["fwd_peak_mib"] is not None  # the exported program runs torch's tensors: the tracker sees them
    assert row["dynamic_hw"].startswith(dynamic), row["dynamic_hw"]


@needs_ort
@pytest.mark.slow
def test_resnet18_with_se_exports_whole_in_onnxruntime():
    from attnzoo.campaign.executors import Local
    from attnzoo.networks.build import create_network
    from attnzoo.networks.cards import get_network
    from attnzoo.profiling.runner import plan_units
    from attnzoo.registry import get_spec

    units = plan_units(["se"], ["1,3,64,64"], _options("onnxruntime"), networks=["resnet18"])
    rows = {row["block"]: row for row in Local().run(units)}
    assert set(rows) == {"none", "se"}
    for row in rows.values():
        assert row["status"] == "ok", row["status"]
        assert row["network"] == "resnet18" and row["export"] == "ok" and row["rel_err"] <= 1e-4
        assert "Conv" in row["onnx_ops"] and row["dynamic_hw"] == "yes"
    placed = create_network(get_network("resnet18"), get_spec("se"), "1,3,64,64")
    assert rows["se"]["params"] == sum(p.numel() for p in placed.model.parameters())
    assert rows["se"]["inserted"] == len(placed.blocks) > 0
    assert "Sigmoid" in rows["se"]["onnx_ops"] and "Sigmoid" not in rows["none"]["onnx_ops"]  # the gates are there


@needs_ort
def test_export_dir_keeps_files_that_load_and_reproduce_eager(tmp_path, capsys):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from attnzoo.build import create
    from attnzoo.registry import get_spec

    out = tmp_path / "exported"
    code = run(["profile", "eca", "--shape", "1,32,8,8", "--runtime", "onnxruntime", "--export-dir", str(out),
                "--min-time", "0.01", "--warmup", "1", "--format", "csv"])
    assert code == 0, capsys.readouterr().err
    path = out / "eca-1x32x8x8.onnx"
    assert [p.name for p in out.iterdir()] == [path.name]
    onnx.checker.check_model(str(path))
    (x,) = create(get_spec("eca"), (1, 32, 8, 8), seed=0)[1]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    (want,) = ReferenceEvaluator(onnx.load(str(path))).run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == (1, 32, 8, 8) and np.isfinite(got).all()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()  # onnx's own reference reads it the same


@needs_export
@pytest.mark.slow
def test_export_dir_keeps_torch_export_programs(tmp_path, capsys):
    import torch

    code = run(["profile", "se", "--shape", "1,16,8,8", "--runtime", "torch.export", "--export-dir", str(tmp_path),
                "--min-time", "0.01", "--warmup", "1", "--format", "csv"])
    assert code == 0, capsys.readouterr().err
    program = torch.export.load(str(tmp_path / "se-1x16x8x8.pt2"))
    assert program.module()(torch.randn(1, 16, 8, 8)).shape == (1, 16, 8, 8)


@needs_ort
@pytest.mark.slow
def test_a_runtime_sweeps_and_resumes_like_any_setting(tmp_path, capsys):
    from attnzoo.profiling.runner import plan_units

    rows_file = tmp_path / "rows.csv"
    args = ["sweep", "se", "--shape", "1,16,8,8", "--hw", "8,16", "--runtime", "onnxruntime", "--min-time", "0.01",
            "--output", str(rows_file)]
    assert run(args) == 0, capsys.readouterr().err
    import pandas as pd

    frame = pd.read_csv(rows_file)
    assert list(frame["runtime"]) == ["onnxruntime", "onnxruntime"] and list(frame["export"]) == ["ok", "ok"]
    capsys.readouterr()
    assert run([*args, "--resume"]) == 0
    assert "resuming: 2 points already" in capsys.readouterr().err
    eager = plan_units(["se"], ["1,16,8,8"], _options("eager"))[0]
    deployed = plan_units(["se"], ["1,16,8,8"], _options("onnxruntime"))[0]
    assert eager.id != deployed.id and "runtime" not in eager.settings_dict  # eager units keep their old ids


BAD = [
    (["--runtime", "ort"], "--runtime ort: not one of eager, torch.export, onnxruntime, openvino; did you mean "
                           "'onnxruntime'?"),
    (["--runtime", "tensorrt"], "not one of eager"),
    (["--export-dir", "{tmp}"], "--export-dir keeps the files a --runtime exports"),
    (["--runtime", "onnxruntime", "--mode", "train"], "--runtime onnxruntime measures inference"),
    (["--runtime", "onnxruntime", "--compile"], "--compile is another way to run it"),
    (["--runtime", "openvino", "--amp"], "takes no --amp"),
    (["--runtime", "onnxruntime", "--device", "cuda"], "runs on the CPU here"),
    (["--runtime", "onnxruntime", "--channels-last"], "no memory format"),
]


@needs_ort
@needs_openvino
@pytest.mark.parametrize("extra,said", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_runtime_options_are_one_line(extra, said, tmp_path, capsys):
    code = run(["profile", "se", "--shape", "1,8,4,4", "--min-time", "0.01",
                *[e.format(tmp=tmp_path) for e in extra]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and said in err, err


@pytest.mark.parametrize("hidden", ["onnxruntime", "openvino", "onnxscript"])
def test_a_missing_runtime_names_the_deploy_extra(hidden, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, hidden, None)  # as if not installed: find_spec finds nothing
    runtime = "onnxruntime" if hidden == "onnxscript" else hidden
    code = run(["profile", "se", "--shape", "1,8,4,4", "--runtime", runtime])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--runtime {runtime} needs" in err and hidden in err and "attnzoo[deploy]" in err


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "torch.export"])
def test_a_torch_too_old_says_which_torch_the_runtime_needs(runtime, monkeypatch, capsys):
    from importlib import metadata

    found = metadata.version

    monkeypatch.setattr(metadata, "version", lambda name: "2.3.1" if name == "torch" else found(name))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())  # the packages "installed"
    code = run(["profile", "se", "--shape", "1,8,4,4", "--runtime", runtime])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--runtime {runtime} needs torch 2.6 or newer" in err and "this is torch 2.3.1" in err


def test_compare_pairs_a_runtime_file_with_an_eager_one():
    from attnzoo.results.compare import compare

    base = [{"block": "se", "shape": "1,64,16,16", "status": "ok", "fwd_ms": 0.2, "runtime": ""}]
    new = [{"block": "se", "shape": "1,64,16,16", "status": "ok", "fwd_ms": 0.1, "runtime": "onnxruntime",
            "rel_err": 1e-7}]
    found = compare(base, new, metrics=["fwd_ms"])
    assert found.matched == 1 and found.rows[0]["ratio"] == 0.5
    assert found.differs["runtime"] == ("", "onnxruntime")  # said beside the comparison, as any other setting
    both = base + new  # one file holding both: the runtime tells its rows apart
    assert "runtime" in compare(both, both, metrics=["fwd_ms"]).key
