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
    """Show a block's card (paper, link, layout, complexity, constructor arguments and defaults, placements) or
    a network's (paper, builder, placements)."""
    from attnzoo.errors import UnknownBlockError
    from attnzoo.introspect import constructor_defaults
    from attnzoo.networks.cards import all_networks, block_placements
    from attnzoo.registry import get_spec

    dirs = registry_dirs(registry)
    try:
        spec = get_spec(name, dirs)
    except UnknownBlockError:
        if name in all_networks(dirs):
            return _network_info(all_networks(dirs)[name], as_json)
        raise
    defaults = constructor_defaults(spec.target)
    example = f"attnzoo profile {spec.name} --shape {EXAMPLE_SHAPE}"
    placements = list(block_placements(spec))
    if as_json:
        print(json.dumps({**spec.to_dict(), "constructor_defaults": defaults, "example": example,
                          "placements": placements}, indent=2))
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
    console.print(f"placements: {', '.join(placements) or 'none (a network has one tensor at each place)'}")
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


def _network_info(spec, as_json: bool) -> None:
    from attnzoo.networks.cards import PLACEMENTS

    example = f"attnzoo profile cbam --network {spec.name} --shape {spec.input} --mode infer"
    if as_json:
        print(json.dumps({**spec.to_dict(), "example": example}, indent=2))
        return
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{spec.name}[/bold]: {spec.title}")
    console.print(f"paper:      {spec.paper}")
    console.print(f"link:       {spec.url}")
    console.print(f"builder:    {spec.builder}" + (f" {json.dumps(spec.args)}" if spec.args else ""), markup=False)
    params = f"{spec.params:,} parameters at " if spec.params else ""
    console.print(f"input:      {params}{spec.input}" + (f"; H and W multiples of {spec.multiple}" if spec.multiple > 1
                                                          else "") + ("; square" if spec.square else ""))
    for i, placement in enumerate(spec.placements):
        console.print(f"{'placements:' if i == 0 else '':12}{placement}: {PLACEMENTS[placement]}", markup=False)
    if spec.notes:
        console.print(f"notes:      {spec.notes}", markup=False)
    console.print(f"card:       {spec.source}")
    console.print(f"example:    {example}")
