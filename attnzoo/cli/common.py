"""Options shared by the commands, and the one place that turns expected errors into a message."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from attnzoo.output import FORMATS

RegistryOption = typer.Option(
    None, "--registry", "-r", metavar="DIR",
    help="Extra folder of block cards (repeatable); also read from $ATTNZOO_REGISTRY.")
FormatOption = typer.Option("table", "--format", "-f", help="Output format: table, csv or json.")
OutputOption = typer.Option(None, "--output", "-o", metavar="FILE", help="Write the data to FILE instead of stdout.")


def registry_dirs(value: Optional[List[str]]) -> list[str]:
    return list(value or [])


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of {', '.join(FORMATS)}", param_hint="--format")
    return fmt


def say(text: str) -> None:
    """One line for the user on stderr, never wrapped (data goes to stdout)."""
    print(" ".join(str(text).split()), file=sys.stderr, flush=True)


def parse_overrides(values: Optional[List[str]]) -> dict:
    """``--set key=value`` options to constructor keywords."""
    from attnzoo.build import parse_override

    return dict(parse_override(v) for v in values or [])


def debug_enabled() -> bool:
    return os.environ.get("ATTNZOO_DEBUG", "") not in ("", "0") or "--debug" in sys.argv
