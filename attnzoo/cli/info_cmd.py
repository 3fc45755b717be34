"""``attnzoo info NAME``: one card, the constructor's defaults and an example command. Never imports torch."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from attnzoo.cli.app import app
from attnzoo.cli.common import RegistryOption, registry_dirs


#: The shape info's example uses for every card: token (BNC) cards take it too, as H*W = 1024 tokens of 64
#: channels (a 4-D shape is flattened by the token adapter), so one shape serves every layout.
EXAMPLE_SHAPE = "2,64,32,32"


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Block name (see 'attnzoo list')."),
    as_json: bool = typer.Option(False, "--json", help="Print the card and defaults as JSON."),
    registry: Optional[List[str]] = RegistryOption,
) -> None:
    """Show a block's card: paper, link, layout, complexity, constructor arguments and defaults."""
    from attnzoo.introspect import constructor_defaults
    from attnzoo.registry import get_spec

    spec = get_spec(name, registry_dirs(registry))
    defaults = constructor_defaults(spec.target)
    example = f"attnzoo profile {spec.name} --shape {EXAMPLE_SHAPE}"
    if as_json:
        print(json.dumps({**spec.to_dict(), "constructor_defaults": defaults, "example": example}, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{spec.name}[/bold]: {spec.title}")
    console.print(f"paper:      {spec.paper}")
    console.print(f"link:       {spec.url}")
    console.print(f"family:     {spec.family}    layout: {spec.layout}    inputs: {spec.inputs}")
    console.print(f"complexity: {spec.complexity}" + (f"  (MACs ~ N^{spec.macs_exponent:g})" if spec.macs_exponent is not None else ""))
    if spec.macs:
        console.print(f"MACs:       {spec.macs}", markup=False)
    console.print(f"target:     {spec.target}")
    if spec.notes:
        console.print(f"notes:      {spec.notes}")
    table = Table(title="constructor arguments", header_style="bold")
    for column in ("argument", "card value", "default"):
        table.add_column(column)
    names = list(defaults or {}) + [k for k in spec.args if k not in (defaults or {})]
    for arg in names:
        card = spec.args.get(arg)
        table.add_row(arg, "" if card is None else json.dumps(card) if not isinstance(card, str) else card,
                      (defaults or {}).get(arg, "?"))
    console.print(table)
    if defaults is None:
        console.print("(defaults not read: the target's source was not found without importing it)")
    console.print(f"card:       {spec.source}")
    console.print(f"example:    {example}")
