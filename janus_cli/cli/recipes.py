"""The recipe in an earlier PNG (`--from-image`): what re-makes it."""

from __future__ import annotations

import json

from janus_cli.errors import InputError


def read_recipe(path: str) -> dict:
    """The `janus-cli` settings a generated PNG carries in its metadata."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            text = img.info.get("janus-cli")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: not an image Pillow can read ({e})") from None
    if text is None:
        raise InputError(f"{path}: no janus-cli metadata (was it made by `janus generate`?)")
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"{path}: its janus-cli metadata is not valid JSON") from None
    if not isinstance(recipe, dict) or "prompt" not in recipe or "seed" not in recipe:
        raise InputError(f"{path}: its janus-cli metadata has no prompt or seed")
    return recipe


def apply_recipe(ctx, recipe: dict, values: dict, keys: tuple[str, ...]) -> dict:
    """VALUES with each of KEYS taken from RECIPE, unless that option was given on the command line."""
    given = {
        name for name in keys if name in ctx.params and ctx.get_parameter_source(name).name == "COMMANDLINE"
    }
    return {**values, **{k: recipe[k] for k in keys if k in recipe and k not in given}}


def check_adapter(png: str, recipe: dict, adapter: str | None, given: bool) -> None:
    """The adapter a `--from-image` run re-makes with: the one the recipe names must still be
    at its path and hold the same weights (its sha256); an --adapter given on the command line
    wins, like any option."""
    if given or not recipe.get("adapter"):
        return
    from pathlib import Path

    from janus_cli.checkpoints.adapter import read_adapter
    from janus_cli.errors import JanusError

    name = recipe.get("adapter_name") or Path(str(adapter)).name
    if not Path(str(adapter)).is_dir():
        raise InputError(
            f"{png} was made with adapter {name} ({adapter}), which is missing; pass --adapter DIR"
        )
    try:
        digest = read_adapter(Path(str(adapter))).digest
    except JanusError as e:
        raise InputError(f"{png} was made with adapter {name}, which no longer loads: {e}") from None
    wanted = recipe.get("adapter_sha256")
    if wanted and digest != wanted:
        raise InputError(
            f"{png} was made with adapter {name} (sha256 {wanted[:12]}), but {adapter} now holds "
            f"another ({digest[:12]}); pass --adapter DIR with the original"
        )
