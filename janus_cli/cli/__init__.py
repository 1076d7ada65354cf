"""The `janus` command. Importing this package must stay cheap: torch loads inside commands."""

from __future__ import annotations

import os

import typer

from janus_cli.cli import console
from janus_cli.cli.chat import chat
from janus_cli.cli.convert import convert
from janus_cli.cli.describe import describe
from janus_cli.cli.finetune import finetune
from janus_cli.cli.flow import flow_generate
from janus_cli.cli.generate import generate
from janus_cli.cli.merge import merge
from janus_cli.cli.models import models
from janus_cli.cli.serve import serve
from janus_cli.cli.show import show

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
app.command("flow-generate", no_args_is_help=True)(flow_generate)
app.command()(chat)
app.command(no_args_is_help=True)(convert)
app.command(no_args_is_help=True)(merge)
app.command(no_args_is_help=True)(show)
app.add_typer(models)
app.command()(serve)
app.command(no_args_is_help=True)(finetune)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", envvar="JANUS_DEBUG", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from janus_cli.version import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()
    console.DEBUG = debug


def main() -> None:
    """Console entry point: usage errors become one `error: ...` line (exit 2), like all errors."""
    # Before torch loads: large tensors on 2 MiB pages (where the kernel's THP mode is madvise,
    # PyTorch asks for them). A decode step streams every weight, and 4 KiB pages' TLB misses
    # cost the CPU kernels 10-25 % of their bandwidth here.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        from typer._click import exceptions as cx  # typer >= 0.22 vendors click
    except ImportError:
        from click import exceptions as cx

    try:
        code = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as e:  # a bare command shows its help; not an error
        if e.format_message().strip():  # Rich help is printed while the error is built
            typer.echo(e.format_message())
        code = 0
    except cx.UsageError as e:
        command = e.ctx.command_path if e.ctx is not None else "janus"
        console.err.print(f"error: {e.format_message()} (see `{command} --help`)", markup=False)
        code = 2
    except cx.ClickException as e:
        console.err.print(f"error: {e.format_message()}", markup=False)
        code = e.exit_code
    except typer.Abort:
        console.err.print("error: aborted", markup=False)
        code = 130
    raise SystemExit(code or 0)
