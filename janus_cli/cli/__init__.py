"""The `janus` command. Importing this package must stay cheap: torch loads inside commands."""

from __future__ import annotations

import typer

from janus_cli.cli import common
from janus_cli.cli.describe import describe
from janus_cli.cli.generate import generate

app = typer.Typer(
    name="janus",
    help="Describe and generate images with DeepSeek's Janus, Janus-Pro and JanusFlow models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
app.command(no_args_is_help=True)(describe)
app.command(no_args_is_help=True)(generate)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar="JANUS_DEBUG", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from janus_cli import __version__

        typer.echo(__version__)
        raise typer.Exit()
    common.DEBUG = debug


def main() -> None:
    app()
