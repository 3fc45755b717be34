"""`attnzoo list` and `attnzoo info`, through the same entry point as the console script."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from attnzoo.cli import run
from tests.test_registry import CORE, GOOD_CARD


def test_list_shows_the_core_blocks(capsys):
    assert run(["list", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert CORE <= {row["name"] for row in rows}
    assert set(rows[0]) == {"name", "family", "layout", "inputs", "complexity", "title"}


def test_list_filters_and_json(capsys):
    assert run(["list", "*attention", "--layout", "BNC", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["layout"] == "BNC" and r["name"].endswith("attention") for r in rows)


def test_list_table(capsys):
    assert run(["list", "cbam"]) == 0
    assert "cbam" in capsys.readouterr().out


def attnzoo_spec(name):
    import attnzoo

    return attnzoo.get_spec(name)


def test_info_shows_paper_link_and_defaults(capsys):
    assert run(["info", "cbam"]) == 0
    out = capsys.readouterr().out
    assert "https://arxiv.org/abs/1807.06521" in out and "Woo et al." in out
    assert "reduction" in out and "16" in out and "attnzoo profile cbam" in out
    assert "MACs:" in out and attnzoo_spec("cbam").macs in out  # the formula the tests check against the counter


def test_info_json_has_constructor_defaults(capsys):
    assert run(["info", "external-attention", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["constructor_defaults"] == {"channels": "required", "memory_size": "64", "tie_memories": "False"}


def test_misspelt_name_is_one_line_and_non_zero(capsys):
    assert run(["info", "cbma"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'cbam'" in err and "Traceback" not in err


def test_user_registry_folder(tmp_path, capsys):
    (tmp_path / "torch-mha.toml").write_text(GOOD_CARD)
    assert run(["list", "--registry", str(tmp_path), "--format", "csv"]) == 0
    assert "torch-mha" in capsys.readouterr().out
    assert run(["info", "torch-mha", "--registry", str(tmp_path)]) == 0


def test_bad_card_in_user_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text(GOOD_CARD.replace('layout = "BNC"', 'layout = "NHWC"'))
    assert run(["list", "--registry", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "layout" in err and "Traceback" not in err


def test_list_and_info_do_not_import_torch():
    code = ("import sys; from attnzoo.cli import run; run(['list']); run(['info', 'cbam']); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_usage_errors_are_one_line_too(capsys):
    assert run(["info"]) == 2
    err = capsys.readouterr().err
    assert "Missing argument" in err and "Traceback" not in err
    assert run(["list", "--nope"]) == 2
    assert "No such option" in capsys.readouterr().err
