"""`janus show`: look at earlier PNGs in the terminal, each with the recipe it was made with."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from janus_cli.cli import console, options, terminal
from janus_cli.cli import preview as previews

FIRST = ("prompt", "seed")  # then the other settings, in the order the recipe holds them
SKIP = ("index",)  # the place in its run: says nothing about the picture
JSON_HELP = 'One JSON object per image on stdout: {"path", "recipe"}, no preview.'


def show(
    images: Annotated[
        list[str], typer.Argument(help="PNGs made by janus generate or flow-generate.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=options.OUTPUT, help=JSON_HELP)] = False,
    preview: previews.Preview = None,
) -> None:
    """Show images in the terminal with their recipe (prompt, seed, settings) under each.

    The preview (on stderr) needs a terminal with 24-bit colour; piped or with NO_COLOR, only the
    path and recipe are printed (on stdout). `janus generate --from-image PNG` makes one again.

    [b]Examples[/b]

      janus show out/*.png

      janus show out/a-red-fox-in-the-snow-002.png --no-preview
    """
    from janus_cli.errors import InputError

    with console.handle_errors():
        previews.choose(False if as_json else preview)
        failed = 0
        for path in images:
            try:
                recipe = _recipe(path)
            except InputError as e:
                console.err.print(f"error: {e}", markup=False)
                failed += 1
                continue
            if as_json:
                typer.echo(json.dumps({"path": path, "recipe": recipe}, ensure_ascii=False))
                continue
            typer.echo(path)
            previews.show(path)
            for line in recipe_lines(recipe):
                typer.echo(f"  {line}")
        if failed:
            raise console.fail(f"{failed} of {terminal.plural(len(images), 'image')} could not be shown", 1)


def _recipe(path: str) -> dict | None:
    """PATH's janus-cli recipe, None for an image without one; an error for what is no image."""
    from janus_cli.cli.recipes import read_recipe
    from janus_cli.errors import InputError

    try:
        return read_recipe(path)
    except InputError:
        if not _plain_image(path):
            raise
        return None


def _plain_image(path: str) -> bool:
    """Whether PATH is an image Pillow reads that carries no janus-cli text chunk."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return "janus-cli" not in img.info
    except (OSError, ValueError):
        return False


def recipe_lines(recipe: dict | None) -> list[str]:
    """`key: value` lines, prompt and seed first; one line saying so for an image without a recipe."""
    if recipe is None:
        return ["(no janus-cli recipe: not made by janus generate or flow-generate)"]
    keys = [k for k in FIRST if k in recipe] + [k for k in recipe if k not in FIRST and k not in SKIP]
    return [f"{k}: {recipe[k]}" for k in keys if recipe[k] is not None]
