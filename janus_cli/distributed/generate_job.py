"""`janus generate / flow-generate --engine ray`: the local engine's forward batches run on
actors; the driver writes each PNG (atomically), its manifest line and its stdout line as the
image arrives, with the same record as the local `--jsonl` output."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from janus_cli.cli import common, images, tables
from janus_cli.cli.jobs import Job
from janus_cli.cli.manifest import Manifest
from janus_cli.cli.output import png_metadata
from janus_cli.distributed import cluster
from janus_cli.distributed.image_plan import ImageTask, check_prompts, done_images, pending
from janus_cli.errors import InputError
from janus_cli.imageio import save_png


@dataclass(frozen=True)
class ImageOutput:
    output: str  # folder or name template (-o)
    overwrite: bool
    mode: str  # "text", "jsonl" or "json"
    quiet: bool
    manifest: str | None
    resume: bool
    keep_going: bool
    parquet: Path | None  # --format parquet: the manifest's records also go here at the end


def generate_on_ray(opts: cluster.RayOptions, ref: cluster.ModelRef, task: ImageTask, work: list[Job], base: dict, out: ImageOutput) -> None:
    """Make the images of WORK on the cluster. BASE is the local record's head, its "dtype"
    filled in from the actors. Raises InputError at the end if an image failed (--keep-going),
    at the first failure otherwise."""
    cluster.import_ray()  # without the extra, say so before any work
    if out.resume and out.manifest is None:
        raise InputError("--resume needs --manifest FILE")
    log = Manifest(out.manifest) if out.manifest else None
    units = pending(work, task, done_images(log.records()) if out.resume else set())
    if not units:
        common.err.print("nothing to do: every image is done" if work else "this shard has no images", markup=False)
        return
    check_prompts(ref, task, {u.prompt for u in units}, out.quiet)
    # paths of what is left only: the images a resumed run already wrote keep theirs
    paths = images.plan_images(units, task.seed_of, ref.model, out.output, out.overwrite)
    job_of = {u.first + k: u for u in units for k in range(u.n)}
    if not out.quiet:
        seeds = sorted({u.seed for u in work})
        common.err.print(f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}", markup=False)
    rows = [{"prompt": u.prompt, "n": u.n, "seed": u.seed, "first": u.first, "options": json.dumps(u.options)} for u in units]
    records, failed, t0 = [], 0, time.perf_counter()
    try:
        for row in cluster.stream(rows, ImageWorker, {"ref": ref, "task": task, "threads": opts.cpus_per_worker}, opts):
            index = row["index"]
            if index not in job_of:  # done already, or a batch re-run after its actor died
                continue
            if row["error"] and not out.keep_going:
                raise InputError(row["error"])
            record = _finish(row, job_of.pop(index), base, paths[index], out.overwrite)
            if "error" in record:
                failed += 1
                common.err.print(f"error: {record['error']}", markup=False)
            if log is not None:
                log.append(record)
            records.append(record)
            if out.mode == "jsonl":
                typer.echo(json.dumps(record, ensure_ascii=False))
            elif out.mode == "text" and "path" in record:
                typer.echo(record["path"])
    finally:  # what finished, also when a failure or an interrupt ends the run
        if out.parquet is not None:
            tables.write_parquet(log.records(), out.parquet)
    seconds = time.perf_counter() - t0
    if out.mode == "json":
        typer.echo(json.dumps({"images": records, "seconds": round(seconds, 3)}, ensure_ascii=False, indent=2))
    if not out.quiet:
        made = len(records) - failed
        common.err.print(f"{made} images in {seconds:.1f}s ({made / seconds:.3f} images/s)", markup=False)
    if failed:
        raise common.fail(f"{failed} of {len(records)} images failed", 1)


def _finish(row: dict, job: Job, base: dict, path: Path, overwrite: bool) -> dict:
    """The record of an image that arrived, its PNG written first; a failed one's record."""
    head = {**base, "dtype": row["dtype"]}  # keeps the key's place in the record
    if row["error"]:
        return images.image_record(head, job, row["seed"], row["index"], {"error": row["error"]})
    record = images.image_record(head, job, row["seed"], row["index"], {"path": str(path)})
    pixels = np.frombuffer(row["pixels"], np.uint8).reshape(row["height"], row["width"], 3)
    save_png(pixels, path, png_metadata(record), overwrite)
    return record


class ImageWorker:
    """A Ray actor holding one copy of the model (and, for JanusFlow, the VAE)."""

    def __init__(self, ref: cluster.ModelRef, task: ImageTask, threads: int):
        self.session = cluster.open_session(ref, threads)
        self.task = task
        self.dtype = str(self.session.dtype).removeprefix("torch.")
        self.vae = None
        if task.family == "janusflow":
            from janus_cli.cli.flow import open_vae

            self.vae = open_vae(task.vae, self.session, quiet=True)

    def events(self, prompt: str, n: int, seed: int, first: int, options: dict):
        if self.vae is None:
            from janus_cli.pipelines.text_to_image import GenerateSettings, generate_images

            settings = GenerateSettings(n=n, seed=seed, batch_size=self.task.batch_size, **options)
            return generate_images(self.session, prompt, settings, first_index=first)
        from janus_cli.pipelines.text_to_image_flow import FlowSettings, generate_flow_images

        settings = FlowSettings(n=n, seed=seed, noise=self.task.noise, batch_size=self.task.batch_size, **options)
        return generate_flow_images(self.session, self.vae, prompt, settings, first_index=first)

    def __call__(self, batch: dict) -> dict:
        from janus_cli.pipelines.events import ImageReady

        out: dict[str, list] = {"index": [], "seed": [], "pixels": [], "height": [], "width": [], "dtype": [], "error": []}

        def add(index: int, seed: int, pixels: bytes = b"", height: int = 0, width: int = 0, error: str = "") -> None:
            for key, value in zip(out, (index, seed, pixels, height, width, self.dtype, error)):
                out[key].append(value)

        for prompt, n, seed, first, options in zip(batch["prompt"], batch["n"], batch["seed"], batch["first"], batch["options"]):
            n, seed, first, made = int(n), int(seed), int(first), set()
            unit = Job(str(prompt), n, seed, first, json.loads(options))
            try:
                for event in self.events(unit.prompt, n, seed, first, unit.options):
                    if isinstance(event, ImageReady):
                        made.add(event.index)
                        add(event.index, event.seed, event.pixels.tobytes(), *event.pixels.shape[:2])
            except Exception as e:  # a failed forward fails its images, not the job
                for k in range(n):
                    if first + k not in made:
                        add(first + k, self.task.seed_of(unit, k), error=f"image {first + k}: {cluster.describe_error(e)}")
        return out
