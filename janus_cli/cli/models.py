"""`janus models`: list the known models, download one, describe a checkpoint."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import console, options

models = typer.Typer(
    name="models",
    help="List known models, download them, and show what a checkpoint contains.",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


@models.callback()
def _default(ctx: typer.Context, as_json: options.Json = False) -> None:
    """`janus models` alone lists the models (`janus models --json` as JSON)."""
    if ctx.invoked_subcommand is None:
        list_models(as_json=as_json)


@models.command("list")
def list_models(as_json: options.Json = False) -> None:
    """List the known models and whether each is in the local cache (no network used).

    [b]Examples[/b]

      janus models list

      janus models list --json | jq -r '.[] | select(.cached) | .path'
    """
    with console.handle_errors():
        from janus_cli.checkpoints.hub import cached_path, registry

        rows = []
        for spec in registry().values():
            folder = cached_path(spec.repo)
            rows.append(
                {
                    "name": spec.name,
                    "repo": spec.repo,
                    "family": spec.family,
                    "download_gb": spec.download_gb,
                    "cached": folder is not None,
                    "path": str(folder) if folder else None,
                    "description": spec.description,
                }
            )
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        width = max(len(r["name"]) for r in rows)
        repo_w = max(len(r["repo"]) for r in rows)
        typer.echo(f"{'NAME':<{width}}  {'HUB ID':<{repo_w}}  {'SIZE':>8}  {'FAMILY':<9}  CACHED")
        for r in rows:
            size = f"{r['download_gb']:.2f} GB"
            cached = "yes" if r["cached"] else "no"
            typer.echo(f"{r['name']:<{width}}  {r['repo']:<{repo_w}}  {size:>8}  {r['family']:<9}  {cached}")


@models.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="An alias from `janus models list`, or a hub repo id.")],
    revision: options.Revision = None,
    quiet: options.Quiet = False,
) -> None:
    """Download a model into the Hugging Face cache; prints its local folder.

    [b]Examples[/b]

      janus models pull janus-pro-7b

      HF_HOME=/data/hf janus models pull deepseek-ai/JanusFlow-1.3B --revision main
    """
    with console.handle_errors():
        from janus_cli.checkpoints.hub import download, registry, spec_for
        from janus_cli.errors import InputError

        spec = spec_for(name)
        if spec is None and name.count("/") != 1:
            raise InputError(f"{name}: not a known model ({', '.join(registry())}) or hub repo id")
        repo = spec.repo if spec else name
        if console.show_progress(quiet):
            console.err.print(
                f"pulling {repo}" + (f" ({spec.download_gb:.2f} GB)" if spec else ""), markup=False
            )
        folder = download(repo, spec.files if spec else None, revision, progress=console.show_progress(quiet))
        typer.echo(str(folder))


@models.command("info")
def info(
    name: Annotated[str, typer.Argument(help="An alias, a hub repo id (cached) or a checkpoint folder.")],
    as_json: options.Json = False,
) -> None:
    """Show a checkpoint's architecture, parameter count and special-token ids.

    A known model that is not downloaded is described from its bundled published config.

    [b]Examples[/b]

      janus models info janus-pro-7b

      janus models info ./my-checkpoint --json
    """
    with console.handle_errors():
        from janus_cli.checkpoints.info import describe

        doc = describe(name)
        if as_json:
            typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
            return
        for key, value in doc.items():
            if value is None:
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
            elif isinstance(value, int) and key.endswith("parameters"):
                value = f"{value:,}"
            typer.echo(f"{key.replace('_', ' ')}: {value}")
