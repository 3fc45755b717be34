"""Every command's --help reads as paragraphs the terminal wraps: no line break of a docstring reaches it."""

from __future__ import annotations

import inspect

import pytest

from attnzoo.cli import app, run
from attnzoo.cli.common import reflow

COMMANDS = [c.name for c in app.registered_commands]


def test_reflow_joins_lines_of_a_paragraph_and_keeps_paragraphs_and_examples():
    text = """First line
    continues here.

    Second paragraph
    also wraps.

    Example:
        attnzoo train cbam
        attnzoo train mha
    """
    assert reflow(text) == ("First line continues here.\n\nSecond paragraph also wraps.\n\n"
                            "Example:\n    attnzoo train cbam\n    attnzoo train mha")


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip() and not p.split("\n", 1)[-1].startswith(" ")]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_paragraphs_reach_the_terminal_whole(command, monkeypatch, capsys):
    """On a wide terminal each paragraph of the help is one line; every option's help is one line too."""
    monkeypatch.setenv("COLUMNS", "2000")
    monkeypatch.setenv("TERMINAL_WIDTH", "2000")
    args = [command, "--help"] if command else ["--help"]
    assert run(args) == 0
    shown = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    info = next((c for c in app.registered_commands if c.name == command), None)
    text = app.info.help if info is None else (info.help or inspect.getdoc(info.callback))
    for paragraph in _paragraphs(text):
        assert paragraph in shown, f"'{paragraph[:60]}...' is broken across lines in '{command} --help'"
    if info is not None:
        for name, parameter in inspect.signature(info.callback).parameters.items():
            help_text = getattr(parameter.default, "help", None) or ""
            assert "\n" not in help_text, f"{command} {name}: its help has a line break"


def test_a_docstring_broken_over_lines_is_reflowed(monkeypatch, capsys):
    """A command documented by a docstring (as train was): without tidy_help its breaks reach the terminal."""
    import typer

    from attnzoo.cli.common import tidy_help

    monkeypatch.setenv("COLUMNS", "2000")
    monkeypatch.setenv("TERMINAL_WIDTH", "2000")

    def build(tidy: bool) -> list[str]:
        local = typer.Typer(add_completion=False)

        @local.command("go")
        def go(count: int = typer.Option(1, "--count", help="How many.")) -> None:
            """Go.

            A sentence that a docstring breaks
            in the middle, as train's did.
            """

        @local.command("stay")
        def stay() -> None:
            """Another."""

        if tidy:
            tidy_help(local)
        with pytest.raises(SystemExit):
            local(["go", "--help"], prog_name="x")
        return [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]

    sentence = "A sentence that a docstring breaks in the middle, as train's did."
    assert sentence not in build(tidy=False)
    assert sentence in build(tidy=True)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_python_types(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    assert run([command, "--help"] if command else ["--help"]) == 0
    out = capsys.readouterr().out
    for shown in ("<bool>", "<str>", "<int>", "<float>", "<list[str]>"):
        assert shown not in out
    if command is None:
        assert "--debug" in out and "--version" in out
    if command == "train":
        assert "--dtype" not in out  # train has no --dtype
