"""The ``swe-srl`` command line. Each command lives in its own module under ``swe_srl.commands``."""

from __future__ import annotations

import typer

from . import __version__
from .commands import collect, evaluate, images, inspect_cmd, quickstart, report, train

app = typer.Typer(
    name="swe-srl",
    help="Supervised Reinforcement Learning: expert trajectories -> step data -> GRPO with a step-similarity reward.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (collect, train, evaluate, inspect_cmd, quickstart, images, report):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swe-srl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """swe-srl: collect -> train -> eval."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
