"""The built wheel carries the cards and suites and answers `attnzoo list` on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_cards_and_runs_list(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("attnzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    cards = sorted(p.name for p in (ROOT / "registry").glob("*.toml"))
    assert {f"attnzoo/_data/registry/{c}" for c in cards} <= set(names)
    assert any(n.startswith("attnzoo/_data/profiles/") for n in names) or not list((ROOT / "profiles").glob("*.toml"))
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "attnzoo = attnzoo.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                              str(site), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ATTNZOO_REGISTRY", None)
    code = ("import attnzoo, sys; from attnzoo.registry import bundled_registry_dir; "
            "print(attnzoo.__file__); print(bundled_registry_dir()); from attnzoo.cli import main; "
            "sys.argv = ['attnzoo', 'list', '--format', 'csv']; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(site)) and lines[1] == str(site / "attnzoo" / "_data" / "registry")
    listed = {line.split(",")[0] for line in lines[3:]}
    assert {c.removesuffix(".toml") for c in cards} == listed
