"""Regenerate docs/report.png: the report of the whole zoo and a sweep, as headless Chromium shows it.

Runs ``attnzoo profile --all --shape 2,64,32,32 --mode infer`` and ``attnzoo sweep mha external-attention
sdpa --shape 1,64,8,8 --hw 16,24,32,48``, writes ``attnzoo report`` of both, opens it in Chromium through the
same driver the report's test uses (tests/browser.py), sorts by forward time and takes a screenshot.

    python benchmarks/report_screenshot.py [--out docs/report.png]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import common
from common import parser

PROFILE = ["profile", "--all", "--shape", "2,64,32,32", "--mode", "infer"]
SWEEP = ["sweep", "mha", "external-attention", "sdpa", "--shape", "1,64,8,8", "--hw", "16,24,32,48"]


def attnzoo(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "attnzoo", *args], cwd=common.ROOT)
    if done.returncode:
        raise SystemExit(f"attnzoo {' '.join(args)} failed ({done.returncode})")


def main(argv=None) -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--out", default=str(common.ROOT / "docs" / "report.png"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(common.ROOT / "tests"))
    from browser import Browser, find_browser

    binary = find_browser()
    if binary is None:
        raise SystemExit("no Chromium found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        attnzoo(PROFILE + ["--output", str(folder / "zoo.csv")])
        attnzoo(SWEEP + ["--output", str(folder / "sweep.csv")])
        attnzoo(["report", str(folder / "zoo.csv"), str(folder / "sweep.csv"), "--out", str(folder / "report.html")])
        browser = Browser(binary, folder / "profile")
        try:
            browser.open((folder / "report.html").as_uri())
            headers = browser.evaluate("Array.from(document.querySelectorAll('#results th')).map(h => h.textContent)")
            browser.click(f"#results th:nth-child({headers.index('fwd_ms') + 1})")  # sorted by forward time
            browser.screenshot(Path(args.out))
        finally:
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
