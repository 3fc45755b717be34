"""A corpus of bad inputs for every command: each ends with a non-zero exit and exactly one line on stderr,
never a traceback; and a bad output path is refused before anything is measured."""

from __future__ import annotations

import json

import pytest

from attnzoo.cli import run
from attnzoo.profiling import runner

SE = ["se", "--shape", "1,8,4,4", "--mode", "infer", "--min-time", "0.01", "--warmup", "0"]
SWEEP = ["sweep", "se", "--shape", "1,8,4,4", "--hw", "4,8", "--min-time", "0.01"]

CARD = """name = "{name}"
title = "A user's block"
paper = "Someone, 2026"
url = "https://example.org/paper"
family = "{family}"
layout = "BCHW"
target = "{target}"
complexity = "O(N*C)"
macs_exponent = 1
macs = "0"
[args]
channels = "C"
"""

# (arguments, a fragment the one line must hold, exit status). {tmp} is the test's folder: it holds
# good.csv (a result file), afile (a plain file: a header and no rows), bin.csv (bytes), bad.json (broken JSON), and card folders.
CORPUS = [
    # profile
    (["profile"], "name at least one block", 2),
    (["profile", "nope", "--shape", "1,8,4,4"], "unknown block 'nope'", 2),
    (["profile", "se", "--shape", "1,8,x,4"], "1,8,x,4", 2),
    (["profile", "se", "--shape", "1,8"], "2 dimensions", 2),
    (["profile", *SE, "--device", "tpu"], "device 'tpu'", 2),
    (["profile", *SE, "--dtype", "float8"], "dtype 'float8'", 2),
    (["profile", "se", "--shape", "1,8,4,4", "--mode", "fast"], "mode 'fast'", 2),
    (["profile", *SE, "--min-time", "0"], "--min-time", 2),
    (["profile", *SE, "--threads", "0"], "threads", 2),
    (["profile", *SE, "--set", "reduction"], "key=value", 2),
    (["profile", *SE, "--format", "xml"], "xml", 2),
    (["profile", *SE, "--bogus"], "No such option: --bogus", 2),
    (["profile", *SE, "--output", "{tmp}/missing/x.csv"], "folder '{tmp}/missing' does not exist", 2),
    (["profile", *SE, "--output", "{tmp}/x.bmpx"], "unknown format ('.bmpx')", 2),
    (["profile", *SE, "--output", "{tmp}"], "is a folder", 2),
    (["profile", *SE, "--output", "{tmp}/afile/x.csv"], "is not a folder", 2),
    (["profile", *SE, "--format", "csv", "--output", "{tmp}/x.json"], "does not match", 2),
    (["profile", "--suite", "nosuch"], "no suite 'nosuch'", 2),
    (["profile", "mha", "--shape", "1,10,4,4", "--mode", "infer"], "divisible by num_heads", 2),  # refused: no row can run
    (["profile", "mha", "se", "--shape", "1,10,4,4", "--mode", "infer", "--min-time", "0.01"], "divisible by num_heads",
     1),  # mha a failed row, se measured
    (["profile", *SE, "--set", "reduction=0"], "se's reduction takes a positive integer", 2),
    # sweep
    ([*SWEEP, "--plot", "{tmp}/p.bmpx"], "--plot {tmp}/p.bmpx: unknown format", 2),
    ([*SWEEP, "--plot", "{tmp}/missing/p.png"], "does not exist", 2),
    ([*SWEEP, "--output", "{tmp}/rows.txt"], ".csv or .json", 2),
    ([*SWEEP, "--output", "{tmp}/missing/rows.csv"], "does not exist", 2),
    ([*SWEEP, "--output", "{tmp}/bad.json", "--resume"], "cannot resume", 2),
    (["sweep", "se", "--shape", "1,8,4,4", "--over", "depth", "--values", "4,8"], "--over", 2),
    (["sweep", "se", "--shape", "1,8,4,4", "--hw", "4"], "at least two", 2),
    # train (all refused before any data is loaded)
    (["train"], "give a block", 2),
    (["train", "nope"], "unknown block 'nope'", 2),
    (["train", "cbam", "--compare", "se,cbam"], "not both", 2),
    (["train", "cbam", "--epochs", "0"], "--epochs", 2),
    (["train", "cbam", "--batch-size", "0"], "--batch-size", 2),
    (["train", "cbam", "--train-size", "0"], "--train-size", 2),
    (["train", "cbam", "--out", "{tmp}/afile/run"], "is not a folder", 2),
    (["train", "cbam", "--output", "{tmp}/missing/summary.csv"], "does not exist", 2),
    (["train", "cbam", "--output", "{tmp}/summary.xlsx"], "unknown format", 2),
    (["train", "--compare", "cnn,cnn"], "twice", 2),
    # compare
    (["compare", "{tmp}/good.csv"], "Missing argument", 2),
    (["compare", "{tmp}/good.csv", "{tmp}/none.csv"], "NEW {tmp}/none.csv: no such file", 2),
    (["compare", "{tmp}/bin.csv", "{tmp}/good.csv"], "not a text file", 2),
    (["compare", "{tmp}/good.csv", "{tmp}/bad.json"], "not valid JSON", 2),
    (["compare", "{tmp}/good.csv", "{tmp}"], "not valid JSON", 2),  # a folder is read as the parts of a campaign
    (["compare", "{tmp}/good.csv", "{tmp}/good.csv", "--fail-above", "fast"], "--fail-above", 2),
    (["compare", "{tmp}/good.csv", "{tmp}/good.csv", "--output", "{tmp}/d.bmpx"], "unknown format", 2),
    # report
    (["report"], "Missing argument", 2),
    (["report", "{tmp}/none.csv"], "no such file", 2),
    (["report", "{tmp}/good.csv", "--out", "{tmp}/r.txt"], "use .html or .htm", 2),
    (["report", "{tmp}/good.csv", "--out", "{tmp}/missing/r.html"], "does not exist", 2),
    (["report", "{tmp}/afile"], "has no rows", 2),
    # list and info
    (["list", "--family", "nope"], "unknown family 'nope'", 2),
    (["list", "--format", "xml"], "xml", 2),
    (["list", "--output", "{tmp}/missing/l.csv"], "does not exist", 2),
    (["info"], "Missing argument", 2),
    (["info", "nope"], "unknown block 'nope'", 2),
    (["info", "se", "extra"], "unexpected extra argument", 2),
    # user cards (--registry)
    (["list", "--registry", "{tmp}/nodir"], "registry folder not found", 2),
    (["list", "--registry", "{tmp}/cards-syntax"], "not valid TOML", 2),
    (["list", "--registry", "{tmp}/cards-family"], "family", 2),
    (["list", "--registry", "{tmp}/cards-duplicate"], "duplicate block name 'se'", 2),
    (["info", "mine", "--registry", "{tmp}/cards-family"], "family", 2),
    (["profile", "mine", "--registry", "{tmp}/cards-import", "--shape", "1,8,4,4"], "cannot import", 2),  # no row can run
]


@pytest.fixture
def corpus_dir(tmp_path):
    (tmp_path / "good.csv").write_text('block,shape,status,fwd_ms\nse,"1,8,4,4",ok,0.1\n')
    (tmp_path / "afile").write_text("block,shape\n")
    (tmp_path / "bin.csv").write_bytes(b"\x00\x01\xff\xfe")
    (tmp_path / "bad.json").write_text("[{")
    cards = {"cards-syntax": 'name = "x"\ntitle = [\n',
             "cards-family": CARD.format(name="mine", family="colour", target="attnzoo.blocks.se:SqueezeExcitation"),
             "cards-duplicate": CARD.format(name="se", family="channel", target="attnzoo.blocks.se:SqueezeExcitation"),
             "cards-import": CARD.format(name="mine", family="channel", target="nosuchmodule.sub:Thing")}
    for folder, text in cards.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "card.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("args, fragment, status", CORPUS, ids=[" ".join(c[0])[:60] for c in CORPUS])
def test_bad_input_ends_in_one_line(corpus_dir, capsys, monkeypatch, args, fragment, status):
    monkeypatch.chdir(corpus_dir)  # train's default run folder, if ever reached, lands in the tmp folder
    args = [a.format(tmp=corpus_dir) for a in args]
    assert run(args) == status
    err = capsys.readouterr().err
    # A row that ran may be followed by the busy-machine footer (attnzoo.profiling.load): not an error line.
    lines = [line for line in err.splitlines() if not line.startswith("attnzoo: warning:")]
    assert len(lines) == 1, err
    assert fragment.format(tmp=corpus_dir) in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [
    ["profile", *SE, "--output", "{tmp}/missing/x.csv"],
    ["profile", *SE, "--output", "{tmp}/x.bmpx"],
    [*SWEEP, "--plot", "{tmp}/p.bmpx"],
    [*SWEEP, "--plot", "{tmp}/missing/p.png"],
    [*SWEEP, "--output", "{tmp}/missing/rows.json"],
])
def test_a_bad_output_path_is_refused_before_any_measurement(tmp_path, capsys, monkeypatch, args):
    measured = []
    monkeypatch.setattr(runner, "profile_one", lambda *a, **k: measured.append(a) or {})
    assert run([a.format(tmp=tmp_path) for a in args]) == 2
    assert measured == []
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_written_files_leave_no_temporary_behind(tmp_path):
    out = tmp_path / "rows.json"
    assert run(["profile", *SE, "--output", str(out)]) == 0
    assert json.loads(out.read_text())[0]["block"] == "se"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    from attnzoo import output

    target = tmp_path / "rows.csv"
    target.write_text("old complete file\n")

    def broken_fsync(fd):
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(output.os, "fsync", broken_fsync)
    with pytest.raises(KeyboardInterrupt):
        output.write_atomic(target, "new text " * 1000)
    assert target.read_text() == "old complete file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]  # the temporary file is removed


def test_sweep_row_file_is_replaced_whole_after_each_row(tmp_path, monkeypatch):
    """Every row lands through a rename (no in-place append that a kill could cut in half)."""
    from attnzoo import output

    renames = []
    real = output.os.replace
    monkeypatch.setattr(output.os, "replace", lambda a, b: renames.append(str(b)) or real(a, b))
    out = tmp_path / "sweep.csv"
    assert run([*SWEEP, "--mode", "infer", "--output", str(out)]) == 0
    assert renames.count(str(out)) == 3  # the empty file with its header, then one per point


# Bad input answered at once: before the device is resolved, any calibration or any row. {tmp} is a folder.
CBAM = ["cbam", "--shape", "1,64,8,8", "--mode", "infer"]
EARLY = [
    (["profile", *CBAM, "--set", "reduction=0"], "cbam's reduction takes a positive integer", 2),
    (["profile", *CBAM, "--set", "reduction=nan"], "reduction takes a positive integer", 2),
    (["profile", *CBAM, "--set", "reduction=eight"], "not 'eight'", 2),
    (["profile", *CBAM, "--set", "reduction=-4"], "not -4", 2),
    (["profile", *CBAM, "--set", "reductoin=8"], "cbam has no argument 'reductoin'; did you mean 'reduction'?", 2),
    (["profile", *CBAM, "--set", "no_spatial=3"], "no_spatial takes true or false", 2),
    (["profile", *CBAM, "--set", "channels=C//128"], "channels would be 0 at shape 1,64,8,8", 2),
    (["profile", "mha", "--shape", "1,64,8,8", "--set", "attn_dropout=nan"], "attn_dropout takes a probability", 2),
    (["profile", "mha", "--shape", "1,64,8,8", "--set", "attn_dropout=1.5"], "not 1.5", 2),
    (["profile", "cbam", "se", "--shape", "1,64,8,8", "--set", "foo=3"], "none of the blocks named (cbam, se)", 2),
    (["profile", "cbam", "se", "--shape", "1,64,8,8", "--set", "sk.groups=2"], "'sk' is not one of the blocks", 2),
    (["profile", "cbam", "se", "--shape", "1,64,8,8", "--set", "se.kernel_size=3"], "se has no argument", 2),
    (["sweep", "cbam", "--shape", "1,64,8,8", "--hw", "8,16", "--set", "reductoin=8"], "did you mean 'reduction'", 2),
    (["profile", "cbam", "--shape", "1,64,8"], "cbam works on feature maps", 2),
    (["profile", "cbam", "--shape", "-1,64,8,8"], "every dimension must be a positive integer, and -1 is not", 2),
    (["sweep", "se", "--shape", "1,64,8,8", "--hw", "64:8:0"], "the step must be a positive integer", 2),
    (["sweep", "se", "--shape", "1,64,8", "--hw", "8,16"], "se works on feature maps", 2),
    (["profile", "se", "--shape", "1,8,4,4", "--mode", "train", "--plot", "{tmp}/roof.pdf"], "--mode train", 2),
    (["profile", *CBAM, "--columns", "block,fwd_msec"], "no column 'fwd_msec'", 2),
    (["profile", "CBAM", "--shape", "1,64,8,8"], "did you mean 'cbam'?", 2),
    (["profile", "resnet18", "--shape", "1,3,64,64"], "resnet18 is a network, not a block: --network resnet18", 2),
    (["sweep", "swin", "--shape", "1,64,8,8", "--hw", "8,16"], "did you mean 'swin-window-attention'?", 2),
    (["info", "CBAM"], "did you mean 'cbam'?", 2),
    (["info", "swin"], "did you mean 'swin-window-attention'?", 2),
    (["info", "channel"], "'channel' is a family of", 2),
]


@pytest.mark.parametrize("args, fragment, status", EARLY, ids=[" ".join(c[0])[:60] for c in EARLY])
def test_bad_input_is_answered_before_anything_is_measured(tmp_path, capsys, monkeypatch, args, fragment, status):
    """One line with the suggestion, the usage exit status, and nothing reached: no device resolved (the step
    that imports torch's device code), no ceiling calibrated, no row measured."""
    reached = []
    monkeypatch.setattr(runner.ProfileOptions, "checked", lambda self, here=True: reached.append("checked"))
    monkeypatch.setattr(runner, "calibrate", lambda *a, **k: reached.append("calibrate"))
    monkeypatch.setattr(runner, "profile_one", lambda *a, **k: reached.append("row") or {})
    assert run([a.format(tmp=tmp_path) for a in args]) == status
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert fragment in err and "Traceback" not in err
    assert reached == []


def test_a_bad_set_value_does_not_import_torch():
    """In a fresh process the answer comes before torch is imported (so within Python's start-up time)."""
    import subprocess
    import sys

    code = ("import sys; from attnzoo.cli import run; "
            "status = run(['profile', 'cbam', '--shape', '1,64,8,8', '--set', 'reduction=0']); "
            "print(status, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "takes a positive integer" in done.stderr


def test_a_family_names_its_blocks_in_profile():
    from attnzoo.registry import list_blocks, resolve_names

    assert resolve_names(["channel"]) == [spec.name for spec in list_blocks(family="channel")]
    assert resolve_names(["se", "channel"])[0] == "se"  # in order, without repeats


def test_per_block_set_in_profile(capsys):
    """BLOCK.KEY=VALUE sets one block; a plain KEY=VALUE every named block that takes it (se has no kernel)."""
    code = run(["profile", "cbam", "se", "--shape", "1,64,8,8", "--mode", "infer", "--min-time", "0.01",
                "--warmup", "0", "--set", "kernel_size=3", "--set", "se.reduction=4", "--set", "cbam.no_spatial=true",
                "-f", "json"])
    rows = {row["block"]: row for row in json.loads(capsys.readouterr().out)}
    assert code == 0
    assert rows["cbam"]["overrides"] == "kernel_size=3;no_spatial=True"
    assert rows["se"]["overrides"] == "reduction=4"


def test_per_block_set_in_sweep(capsys):
    code = run(["sweep", "cbam", "se", "--shape", "1,64,8,8", "--hw", "4,8", "--mode", "infer", "--min-time",
                "0.01", "--set", "cbam.reduction=8", "--set", "reduction=4", "-f", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {(r["block"], r["overrides"]) for r in rows} == {("cbam", "reduction=8"), ("se", "reduction=4")}
    assert len(rows) == 4


# Tables that fit the terminal.
def _raw_rows():
    """Rows as the profiler writes them (no measurement): a long name, a long shape, big and small numbers."""
    base = {"status": "ok", "device": "cpu", "device_name": "a CPU", "dtype": "float32", "threads": 2,
            "torch": "2.x", "mode": "both", "overrides": "", "bytes_min": 153130000, "intensity": 631.1,
            "bound": "compute", "of_limit": 0.158, "train_peak_mib": 2166.0}
    return [{**base, "block": "mh-external-attention", "shape": "128,256,24,24", "params": 533888,
             "macs": 48318382080, "fwd_ms": 2106.42, "fwd_iqr_ms": 31.5, "fwd_peak_mib": 1152.0,
             "train_ms": 16850.1, "train_iqr_ms": 120.0},
            {**base, "block": "se", "shape": "1,64,8,8", "params": 580, "macs": 512, "fwd_ms": 0.0386,
             "fwd_iqr_ms": 0.0054, "fwd_peak_mib": 0.0161, "train_ms": 0.2091, "train_iqr_ms": 0.063,
             "overrides": "reduction=4"}]


def _table(monkeypatch, capsys, width, **options):
    from attnzoo.cli.profile_cmd import _caption, _table_rows
    from attnzoo.output import render

    monkeypatch.setenv("COLUMNS", str(width))
    rows = _raw_rows()
    shown, labels = _table_rows(rows, options.get("wide", False), options.get("chosen"))
    render(shown, "table", columns=labels, caption=_caption(rows), fit=options.get("chosen") is None,
           wide=options.get("wide", False))
    return shown, labels, capsys.readouterr().out


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_table_fits_the_width_and_never_splits_a_number_or_a_shape(monkeypatch, capsys, width):
    shown, labels, out = _table(monkeypatch, capsys, width)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "block" in line and "shape" in line)
    headings = [h.strip() for h in header.strip("┃ ").split("┃")]
    assert headings[:3] == ["block", "shape", "status"]
    for row in shown:  # every cell of every column shown is whole on one line
        for heading in headings:
            cell = str(row[heading]) if row[heading] is not None else ""
            if isinstance(row[heading], int) and row[heading] >= 10_000:
                cell = f"{row[heading]:,}"
            assert any(cell in line for line in lines), (heading, cell)
    left_out = [label for label in labels if label not in headings]
    assert headings == [label for label in labels if label not in left_out]
    if left_out:
        note = " ".join(out.split("left out to fit")[1].split())
        assert all(label in note for label in left_out)


def test_the_default_columns_at_100_and_200(monkeypatch, capsys):
    """At 200 the default set shows whole, with the setting the rows differ in (--set) and without the
    columns only --wide shows; at 100 columns it is cut from the right, and says so."""
    _, _, wide_out = _table(monkeypatch, capsys, 200)
    for heading in ("block", "shape", "status", "params", "MACs", "fwd ms", "fwd MiB", "train ms", "set"):
        assert heading in wide_out
    assert "bytes min" not in wide_out and "left out" not in wide_out
    _, _, narrow = _table(monkeypatch, capsys, 100)
    assert "fwd ms" in narrow and "left out to fit 100 columns" in narrow


def test_wide_and_columns(monkeypatch, capsys):
    _, _, out = _table(monkeypatch, capsys, 80, wide=True)
    assert "bytes min" in out and "train MiB" in out and "left out" not in out
    _, _, out = _table(monkeypatch, capsys, 80, chosen=["block", "fwd_ms", "fwd_iqr_ms"])
    header = next(line for line in out.splitlines() if "block" in line)
    assert [h.strip() for h in header.strip("┃ ").split("┃")] == ["block", "fwd ms", "fwd_iqr_ms"]


def test_piped_tables_follow_columns(monkeypatch, capsys):
    from attnzoo.output import render

    rows = [{"name": f"block-{i}", "title": "word " * 30} for i in range(3)]
    monkeypatch.setenv("COLUMNS", "60")
    render(rows, "table")
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 60
    monkeypatch.delenv("COLUMNS")
    render(rows, "table")
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) > 80  # piped: not rich's 80


def test_version(capsys):
    from attnzoo import __version__

    assert run(["--version"]) == 0
    assert capsys.readouterr().out == f"attnzoo {__version__}\n"


def test_singular_and_json_nulls(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert run(["profile", *SE, "--output", str(out)]) == 0
    assert f"wrote 1 row to {out}" in capsys.readouterr().err
    row = json.loads(out.read_text())[0]
    assert "" not in row.values()
    assert row["compile"] is None and row["channels_last"] is False


def test_out_and_output_are_the_same_option(tmp_path, capsys):
    assert run(["list", "se", "--out", str(tmp_path / "a.csv")]) == 0
    assert run(["list", "se", "--output", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
