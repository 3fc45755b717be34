"""``attnzoo list``: the cards, filtered by name pattern, family and layout. Never imports torch."""

from __future__ import annotations

from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import FormatOption, OutputOption, RegistryOption, check_format, registry_dirs

COLUMNS = ("name", "family", "layout", "inputs", "complexity", "title")
NETWORK_COLUMNS = ("name", "placements", "input", "params", "builder", "title")


@app.command("list")
def list_command(
    pattern: str = typer.Argument("*", help="Shell-style name pattern, e.g. '*attention'."),
    family: Optional[str] = typer.Option(None, "--family", help="Only this family (channel, self-attention, ...)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Only BCHW or BNC blocks."),
    networks: bool = typer.Option(False, "--networks", help="List the networks blocks can be placed in instead."),
    fmt: str = FormatOption,
    output: Optional[str] = OutputOption,
    registry: Optional[List[str]] = RegistryOption,
) -> None:
    """List the blocks in the registry (or, with --networks, the networks)."""
    from attnzoo.output import output_format, render
    from attnzoo.registry import list_blocks

    fmt = output_format(output, check_format(fmt))
    if networks:
        from attnzoo.errors import ConfigError
        from attnzoo.networks.cards import list_networks

        if family is not None or layout is not None:
            raise ConfigError("--family and --layout filter blocks, not --networks")
        rows = [{**spec.to_dict(), "placements": ", ".join(spec.placements)}
                for spec in list_networks(pattern, registry_dirs(registry))]
        render(rows, fmt, columns=NETWORK_COLUMNS, title=f"attnzoo networks ({len(rows)})", output=output)
        return
    specs = list_blocks(pattern, family=family, layout=layout, extra_dirs=registry_dirs(registry))
    rows = [spec.to_dict() for spec in specs]
    render(rows, fmt, columns=COLUMNS, title=f"attnzoo blocks ({len(rows)})", output=output)
