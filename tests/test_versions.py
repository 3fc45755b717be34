"""The supported torch range: declared once (pyproject.toml), pinned at its floor for CI, held by the
installed torch, and a torch below it refused in one line."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from attnzoo import versions
from attnzoo.cli import run
from attnzoo.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_floors() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = {}
    for dep in deps:
        match = re.fullmatch(r"(torch|torchvision)>=([0-9.]+)", dep.replace(" ", ""))
        if match:
            floors[match.group(1)] = match.group(2)
    return floors


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / ".ci" / name).read_text(encoding="utf-8")
    return dict(re.findall(r"^(torch|torchvision)==(\S+)$", text, flags=re.M))


def test_the_floor_ci_pins_is_the_floor_pyproject_declares():
    floors = _pyproject_floors()
    assert set(floors) == {"torch", "torchvision"}, "pyproject.toml must state a lower bound for both"
    assert _pins("constraints-floor.txt") == floors


def test_the_newest_tested_pair_is_inside_the_range_and_above_the_floor():
    floors, newest = _pyproject_floors(), _pins("constraints-newest.txt")
    assert set(newest) == {"torch", "torchvision"}
    for package, floor in floors.items():
        assert versions.release(newest[package]) > versions.release(floor), package


def test_this_suite_runs_on_a_supported_pair():
    for package, floor in _pyproject_floors().items():
        found = metadata.version(package)
        assert versions.release(found) >= versions.release(floor), f"{package} {found} is below the floor {floor}"


def test_ci_tests_the_floor_as_the_readme_says():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Which torch", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands and all(command in ci for command in commands), commands


@pytest.mark.parametrize("text, expected", [
    ("2.3.1", (2, 3, 1)), ("2.3.1+cu121", (2, 3, 1)), ("2.15.0rc1", (2, 15, 0)), ("0.29.2+cu132", (0, 29, 2)),
    ("2.10", (2, 10)),
])
def test_release(text, expected):
    assert versions.release(text) == expected
    assert versions.release("2.10.0") > versions.release("2.9.1")  # numeric, not lexical


def _installed(monkeypatch, **found):
    real = metadata.version
    monkeypatch.setattr(versions.metadata, "version", lambda name: found.get(name) or real(name))
    monkeypatch.setattr(versions, "declared_floors", lambda: {"torch": "2.3.1", "torchvision": "0.18.1"})
    versions.check_supported.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_check():
    versions.check_supported.cache_clear()
    yield
    versions.check_supported.cache_clear()


def test_a_torch_below_the_floor_is_refused_with_what_to_install(monkeypatch):
    _installed(monkeypatch, torch="2.2.2+cu121")
    with pytest.raises(ConfigError, match=r"needs torch >= 2\.3\.1 .*found 2\.2\.2\+cu121: pip install --upgrade "
                                          r"'torch>=2\.3\.1' 'torchvision>=0\.18\.1'"):
        versions.check_supported()


def test_the_floor_itself_and_newer_pass(monkeypatch):
    _installed(monkeypatch, torch="2.3.1", torchvision="0.18.1")
    versions.check_supported()
    _installed(monkeypatch, torch="2.15.0+cu132", torchvision="0.29.2")
    versions.check_supported()


def test_the_cli_says_so_in_one_line(monkeypatch, capsys):
    _installed(monkeypatch, torchvision="0.17.2")
    code = run(["profile", "se", "--shape", "1,16,4,4", "--mode", "infer", "--min-time", "0.01"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "attnzoo: error: attnzoo needs torchvision >= 0.18.1 (the oldest version it is tested on), found 0.17.2: "
        "pip install --upgrade 'torch>=2.3.1' 'torchvision>=0.18.1'"]
