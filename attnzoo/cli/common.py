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


def message(text: str) -> None:
    """A line for the user on stderr (data goes to stdout)."""
    from rich.console import Console

    Console(stderr=True, highlight=False).print(text)


def debug_enabled() -> bool:
    return os.environ.get("ATTNZOO_DEBUG", "") not in ("", "0") or "--debug" in sys.argv
