"""Command-line entry point: ``attnzoo``."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

import typer

from attnzoo.cli.app import app
from attnzoo.cli import info_cmd, list_cmd  # noqa: F401  (each module registers its command on app)
from attnzoo.cli import profile_cmd, sweep_cmd, train_cmd  # noqa: F401
from attnzoo.cli import calibrate_cmd, compare_cmd, merge_cmd, report_cmd  # noqa: F401
from attnzoo.cli.common import debug_enabled, ray_argument, set_debug, tidy_help
from attnzoo.errors import AttnzooError, ProfilerError

tidy_help(app)  # every command's help reads as paragraphs, wrapped by the terminal

#: Exit status of a bug in attnzoo itself (sysexits' EX_SOFTWARE), distinct from a failed row (1) or a usage
#: error (2).
INTERNAL_ERROR = 70


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """Usage errors: recent typer carries its own copy of click, whose exceptions are not the click package's."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status. Expected errors become one line on stderr, not a traceback.

    Set ATTNZOO_DEBUG=1 (or pass --debug) to see the traceback instead.
    """
    given = sys.argv[1:] if argv is None else list(argv)
    args = ray_argument([a for a in given if a != "--debug"])
    previous = set_debug(len(args) < len(given))
    try:
        return _run(args)
    finally:
        set_debug(previous)


def _run(args: list[str]) -> int:
    try:
        result = app(args=args, prog_name="attnzoo", standalone_mode=False)
    except _click_exceptions() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" or debug_enabled():
            exc.show()  # 'attnzoo' or 'attnzoo sweep' alone: the help, as asked
            return exc.exit_code
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        print(f"attnzoo: error: {_one_line(exc.format_message()).rstrip('.')}{hint}", file=sys.stderr)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("attnzoo: interrupted", file=sys.stderr)
        return 130
    except AttnzooError as exc:
        if debug_enabled():
            raise
        print(f"attnzoo: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that vanished or cannot be read or written between the checks and the work
        if debug_enabled():
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"attnzoo: error: {where}{_one_line(exc.strerror or exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug_enabled():
            raise
        print("attnzoo: error: out of memory", file=sys.stderr)
        return 3
    except ProfilerError as exc:
        if debug_enabled():
            raise
        print(f"attnzoo: internal error (a bug in attnzoo, please report it): {_one_line(exc)}; "
              "--debug shows the traceback", file=sys.stderr)
        return INTERNAL_ERROR
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
