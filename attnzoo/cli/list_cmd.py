"""``attnzoo list``: the cards, filtered by name pattern, family and layout. Never imports torch."""

from __future__ import annotations

from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import FormatOption, OutputOption, RegistryOption, check_format, registry_dirs

COLUMNS = ("name", "family", "layout", "inputs", "complexity", "title")


@app.command("list")
def list_command(
    pattern: str = typer.Argument("*", help="Shell-style name pattern, e.g. '*attention'."),
    family: Optional[str] = typer.Option(None, "--family", help="Only this family (channel, self-attention, ...)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Only BCHW or BNC blocks."),
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
    registry: Optional[List[str]] = RegistryOption,
) -> None:
    """List the blocks in the registry."""
    from attnzoo.output import output_format, render
    from attnzoo.registry import list_blocks

    fmt = output_format(output, check_format(fmt))
    specs = list_blocks(pattern, family=family, layout=layout, extra_dirs=registry_dirs(registry))
    rows = [spec.to_dict() for spec in specs]
    render(rows, fmt, columns=COLUMNS, title=f"attnzoo blocks ({len(rows)})", output=output)
