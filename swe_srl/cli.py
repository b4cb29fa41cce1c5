"""The ``swe-srl`` command line. Each command lives in its own module under ``swe_srl.commands``.

One error surface: every command's project errors (``swe_srl.core.errors.SweSrlError`` and its subclasses) and the
expected OS / JSON / YAML / Unicode errors end as one line ``error: <file>[:<line>]: <field>: <reason>`` on stderr
with exit code 2; any other exception (a bug) as one line naming its type and how to see it, exit code 1. The
traceback is printed only with ``swe-srl --debug …`` or ``SWE_SRL_DEBUG=1``.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from . import __version__
from .commands import collect, evaluate, export, images, inspect_cmd, quickstart, report, sandbox, train
from .commands import _common
from .core.errors import EXIT_ERROR, expected_errors, first_line, one_line


class ErrorSurfaceGroup(TyperGroup):
    """The root group: runs a command and turns its errors into one line (traceback with --debug)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit, typer.TyperException):   # usage errors: printed by typer
            raise
        except expected_errors() as e:
            if _debug(ctx):
                raise
            typer.echo(one_line(e), err=True)
            sys.stderr.flush()
            raise typer.Exit(getattr(e, "exit_code", None) or EXIT_ERROR) from None
        except Exception as e:  # noqa: BLE001 - a bug: one line unless --debug, never swallowed silently
            if _debug(ctx):
                raise
            typer.echo(f"error: internal error: {type(e).__name__}: {first_line(str(e))[:300]} (rerun with "
                       "`swe-srl --debug …` or SWE_SRL_DEBUG=1 for the traceback)", err=True)
            sys.stderr.flush()
            raise typer.Exit(1) from None


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.params.get("debug")) or _common.debug_on()


app = typer.Typer(
    name="swe-srl",
    cls=ErrorSurfaceGroup,
    help="Supervised Reinforcement Learning: expert trajectories -> step data -> GRPO with a step-similarity reward.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (collect, train, evaluate, inspect_cmd, quickstart, images, report, sandbox, export):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swe-srl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (also SWE_SRL_DEBUG=1).")
          ) -> None:
    """swe-srl: collect -> train -> eval."""
    _common.DEBUG = debug       # commands' fail() re-raises the exception it reports (its traceback) under --debug


def main() -> None:
    app()


if __name__ == "__main__":
    main()
