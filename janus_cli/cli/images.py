"""What the image commands share: the seed, planned paths, and the recipe in an earlier PNG."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from janus_cli.cli.jobs import Job
from janus_cli.cli.output import plan_paths
from janus_cli.errors import InputError


def version() -> str:
    from janus_cli import __version__

    return __version__


def pick_seed(seed: int | None) -> int:
    import secrets

    return secrets.randbelow(2**31) if seed is None else seed


def plan_images(
    jobs: list[Job], seed_of: Callable[[Job, int], int], model: str, output: str, overwrite: bool, own: set[Path] = frozenset()
) -> dict[int, Path]:
    """The output path of every image (run index -> path), refusing before any work if a path
    exists (other than the images OWN lists, finished by the run being resumed); SEED_OF(job,
    k) is the seed recorded for image k of a job."""
    planned = [{"index": j.first + k, "seed": seed_of(j, k), "prompt": j.prompt, "model": model} for j in jobs for k in range(j.n)]
    return {r["index"]: p for r, p in zip(planned, plan_paths(output, planned, overwrite, own))}


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
    given = {name for name in keys if name in ctx.params and ctx.get_parameter_source(name).name == "COMMANDLINE"}
    return {**values, **{k: recipe[k] for k in keys if k in recipe and k not in given}}
