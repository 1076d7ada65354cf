"""What the image commands share: prompts and seed, planned paths, and rendering a run's events
(progress on stderr, PNGs with metadata, paths or one JSON document on stdout)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from janus_cli.cli import common
from janus_cli.cli.output import plan_paths, png_metadata


def version() -> str:
    from janus_cli import __version__

    return __version__


def read_prompts(prompt: str) -> list[str]:
    """The prompt argument, or one prompt per line of stdin for `-`; refuses empty prompts."""
    prompts = common.read_lines(prompt)
    if not prompts or any(not p.strip() for p in prompts):
        raise common.fail("empty prompt")
    return prompts


def pick_seed(seed: int | None) -> int:
    import secrets

    return secrets.randbelow(2**31) if seed is None else seed


def plan_images(
    prompts: list[str], n: int, seed_of: Callable[[int], int], model: str, output: str, overwrite: bool
) -> list[Path]:
    """One output path per image (prompt j, image k -> index j*n + k), refusing before any work
    if a path exists; SEED_OF(k) is the seed recorded for image k of a prompt."""
    planned = [{"index": j * n + k, "seed": seed_of(k), "prompt": p, "model": model} for j, p in enumerate(prompts) for k in range(n)]
    return plan_paths(output, planned, overwrite)


def write_images(
    prompts: list[str],
    n: int,
    steps_per_image: int,
    events: Callable[[int, str], Iterator],
    paths: list[Path],
    base: dict,
    seed: int,
    as_json: bool,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Run EVENTS(j, prompt) for every prompt and render them: a progress bar (Step), a PNG per
    ImageReady with BASE + prompt/seed/index as metadata, its path on stdout (or, with
    AS_JSON, one JSON document at the end), and a summary on stderr."""
    from janus_cli.imageio import save_png
    from janus_cli.pipelines.events import ImageReady, Step

    if not quiet:
        common.err.print(f"seed {seed}", markup=False)
    records, t0 = [], time.perf_counter()
    with common.progress_bar(quiet) as bar:
        task = bar.add_task("generating", total=len(paths) * steps_per_image)
        for j, p in enumerate(prompts):
            for event in events(j, p):
                if isinstance(event, Step):
                    bar.update(task, completed=j * n * steps_per_image + event.done)
                elif isinstance(event, ImageReady):
                    record = {**base, "prompt": p, "seed": event.seed, "index": event.index, "path": str(paths[event.index])}
                    save_png(event.pixels, paths[event.index], png_metadata(record), overwrite)
                    records.append(record)
                    if not as_json:
                        typer.echo(record["path"])
    seconds = time.perf_counter() - t0
    if as_json:
        typer.echo(json.dumps({"images": records, "seconds": round(seconds, 3)}, ensure_ascii=False, indent=2))
    if not quiet:
        common.err.print(f"{len(records)} images in {seconds:.1f}s ({len(records) / seconds:.3f} images/s)", markup=False)
