"""The Typer application. Command modules attach themselves to ``app``; none imports torch at import time."""

from __future__ import annotations

import typer

HELP = """attnzoo: a zoo and profiler of computer-vision attention blocks.

Costs: one multiply-add is 1 MAC and 2 FLOPs; attention matmuls and scaled_dot_product_attention are counted; an operator that cannot be counted is named in the output, never dropped silently.

Set ATTNZOO_DEBUG=1 (or pass --debug) to see a traceback instead of a one-line error.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _print_version(value: bool) -> None:
    if value:
        from attnzoo import __version__

        print(f"attnzoo {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", metavar="", callback=_print_version, is_eager=True,
                                 help="Print attnzoo's version and exit."),
    debug: bool = typer.Option(False, "--debug", metavar="",
                               help="Show an error's traceback instead of one line (also ATTNZOO_DEBUG=1); "
                                    "accepted anywhere on the command line."),
) -> None:
    """The options every command takes (--debug is read by attnzoo.cli.run wherever it stands)."""
