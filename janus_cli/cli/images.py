"""What the image commands share: seed, planned paths, the recipe in an earlier PNG, and
rendering a run's events (progress on stderr, PNGs with metadata, paths, one JSON document
or JSON lines on stdout)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from janus_cli.cli import common
from janus_cli.cli.jobs import Job
from janus_cli.cli.output import plan_paths, png_metadata
from janus_cli.errors import InputError


def version() -> str:
    from janus_cli import __version__

    return __version__


def pick_seed(seed: int | None) -> int:
    import secrets

    return secrets.randbelow(2**31) if seed is None else seed


def plan_images(jobs: list[Job], seed_of: Callable[[Job, int], int], model: str, output: str, overwrite: bool) -> dict[int, Path]:
    """The output path of every image (run index -> path), refusing before any work if a path
    exists; SEED_OF(job, k) is the seed recorded for image k of a job."""
    planned = [{"index": j.first + k, "seed": seed_of(j, k), "prompt": j.prompt, "model": model} for j in jobs for k in range(j.n)]
    return {r["index"]: p for r, p in zip(planned, plan_paths(output, planned, overwrite))}


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


def image_record(base: dict, job: Job, seed: int, index: int, outcome: dict) -> dict:
    """The record of image INDEX (its --jsonl line and PNG metadata): BASE, the job's options,
    prompt, seed, index, then OUTCOME ({"path": ...}, or {"error": ...} for a failed one)."""
    return {**base, **job.options, "prompt": job.prompt, "seed": seed, "index": index, **outcome}


def write_images(jobs: list[Job], events: Callable[[Job], Iterator], paths: dict[int, Path], base: dict, mode: str, quiet: bool, overwrite: bool) -> None:
    """Run EVENTS(job) for every job and render them: a progress bar (Step), a PNG per
    ImageReady with BASE + the job's options + prompt/seed/index as metadata, and on stdout its
    path (MODE "text"), its record as one JSON line ("jsonl") or one JSON document at the end
    ("json"); a summary on stderr."""
    from janus_cli.imageio import save_png
    from janus_cli.pipelines.events import ImageReady, Step

    if not quiet:
        seeds = sorted({j.seed for j in jobs})
        common.err.print(f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}", markup=False)
    records, t0, done = [], time.perf_counter(), 0
    with common.progress_bar(quiet) as bar:
        task = bar.add_task("generating", total=sum(j.n for j in jobs))
        for job in jobs:
            for event in events(job):
                if isinstance(event, Step):
                    bar.update(task, completed=done + job.n * event.done / event.total)
                elif isinstance(event, ImageReady):
                    record = image_record(base, job, event.seed, event.index, {"path": str(paths[event.index])})
                    save_png(event.pixels, paths[event.index], png_metadata(record), overwrite)
                    records.append(record)
                    if mode != "json":
                        typer.echo(json.dumps(record, ensure_ascii=False) if mode == "jsonl" else record["path"])
            done += job.n
    seconds = time.perf_counter() - t0
    if mode == "json":
        typer.echo(json.dumps({"images": records, "seconds": round(seconds, 3)}, ensure_ascii=False, indent=2))
    if not quiet:
        common.err.print(f"{len(records)} images in {seconds:.1f}s ({len(records) / seconds:.3f} images/s)", markup=False)


def apply_recipe(ctx, recipe: dict, values: dict, keys: tuple[str, ...]) -> dict:
    """VALUES with each of KEYS taken from RECIPE, unless that option was given on the command line."""
    given = {name for name in keys if name in ctx.params and ctx.get_parameter_source(name).name == "COMMANDLINE"}
    return {**values, **{k: recipe[k] for k in keys if k in recipe and k not in given}}
