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
    (["profile", "mha", "--shape", "1,10,4,4", "--mode", "infer"], "divisible by num_heads", 1),  # a row fails
    (["profile", *SE, "--set", "reduction=0"], "reduction must be positive", 1),
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
    (["profile", "mine", "--registry", "{tmp}/cards-import", "--shape", "1,8,4,4"], "cannot import", 1),
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
    lines = err.splitlines()
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
