"""The README stays true: it lists every bundled block, and CI runs the test command it gives."""

from __future__ import annotations

import re
from pathlib import Path

import attnzoo

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_block():
    zoo = README.split("## The zoo", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9-]+)`", zoo))
    missing = {spec.name for spec in attnzoo.list_blocks()} - listed
    assert not missing, f"README's zoo table lacks {sorted(missing)}"
    assert f"the {len(attnzoo.list_blocks())} blocks" in zoo


def test_ci_runs_the_readme_test_command():
    setup = README.split("## Set up and first commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip()]
    test_command = next(line for line in lines if "pytest" in line)
    install_command = next(line for line in lines if "pip install" in line)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install_command in ci.splitlines() and test_command in ci.splitlines()
