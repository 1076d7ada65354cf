"""Running an image command's work list: planned names, --manifest / --resume / --keep-going,
and rendering the events (progress on stderr; PNGs with metadata and optional JSON sidecars;
paths, one JSON document or JSON lines on stdout; a timing summary on stderr)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import typer

from janus_cli.cli import common, images, jobs, output, preview, terminal
from janus_cli.cli.jobs import Job
from janus_cli.cli.manifest import Manifest
from janus_cli.errors import InputError


@dataclass(frozen=True)
class Output:
    """What an image command does with its images (its Output options)."""

    target: str  # -o: a folder or a name template
    overwrite: bool = False
    mode: str = "text"  # "text" (paths), "json" (one document) or "jsonl"
    quiet: bool = False
    manifest: str | None = None
    resume: bool = False
    keep_going: bool = False
    sidecar: bool = False
    parquet: Path | None = None  # --format parquet: the manifest's records also go here at the end

    def open_manifest(self) -> Manifest | None:
        if self.resume and self.manifest is None:
            raise InputError("--resume needs --manifest FILE")
        return Manifest(self.manifest) if self.manifest else None


@dataclass
class Plan:
    work: list[Job]  # what is left to make
    paths: dict[int, Path]  # run index -> output path
    failed: list[tuple[Job, str]] = field(default_factory=list)  # prompts refused with --keep-going


def plan(work: list[Job], seed_of: Callable[[Job, int], int], model: str, out: Output, log: Manifest | None) -> Plan:
    """Name every image of WORK; with --resume, drop the images the manifest records as made
    (same index, prompt, seed, settings and model, and the file still there) and keep the
    names of the run being resumed."""
    done: dict[int, Path] = {}
    if out.resume and log is not None:
        wanted = {(j.first + k): (j, k) for j in work for k in range(j.n)}
        for r in log.records():
            job, k = wanted.get(r.get("index"), (None, 0))
            if job is None or "error" in r or not Path(str(r.get("path"))).is_file():
                continue
            same = {"prompt": job.prompt, "seed": seed_of(job, k), "model": model, **job.options}
            if all(r.get(key) == value for key, value in same.items()):
                done[r["index"]] = Path(r["path"])
    paths = images.plan_images(work, seed_of, model, out.target, out.overwrite, own=set(done.values()))
    if done and not out.quiet:
        common.err.print(f"resuming: {terminal.plural(len(done), 'image')} already made", markup=False)
    left = jobs.select_images(work, lambda i: i not in done)
    return Plan(left, paths)


def check_prompts(p: Plan, check: Callable[[str], object], keep_going: bool) -> None:
    """Run CHECK(prompt) on every prompt before any work; with KEEP_GOING a refused prompt's
    images are set aside as failures instead of stopping the run."""
    bad: dict[str, str] = {}
    for prompt in dict.fromkeys(j.prompt for j in p.work):
        try:
            check(prompt)
        except InputError as e:
            if not keep_going:
                raise
            bad[prompt] = str(e)
    p.failed = [(j, bad[j.prompt]) for j in p.work if j.prompt in bad]
    p.work = [j for j in p.work if j.prompt not in bad]


def batch_size(requested: int | None, run, jobs: list, prompt_length: Callable[[str], int], quiet: bool) -> int:
    """REQUESTED, or for auto what the KV cache of the longest prompt's images lets fit in the
    free memory (pipelines/memory.py); 4 on Ray, whose workers' memory is not known here."""
    if requested is not None:
        return requested
    if not jobs:  # --keep-going set every prompt aside
        return 1
    if run.ray is not None:
        return 4
    from janus_cli.pipelines.memory import auto_batch_size, free_bytes, kv_bytes_per_image

    s = run.session
    positions = max(prompt_length(job.prompt) for job in jobs) + s.config.image_tokens + 1
    guided = any(job.settings.cfg != 1 for job in jobs)
    per_image = kv_bytes_per_image(s.config.llm, positions, s.dtype, guided)
    free = free_bytes(s.device)
    size = auto_batch_size(per_image, free, s.device, sum(job.settings.n for job in jobs))
    if not quiet:
        room = "free memory unknown" if free is None else f"{free / 2**30:.1f} GiB free"
        common.err.print(f"batch size {size} (auto: {per_image / 2**20:.0f} MiB of KV cache per image, {room})", markup=False)
    return size


def write_images(p: Plan, events: Iterator, seed_of: Callable[[Job, int], int], base: dict, out: Output, log: Manifest | None) -> None:
    """Render EVENTS (Step, ImageReady, ImageFailed of P.work's images, in any order) and
    P.failed. Every image gets a record (BASE + its job's options + prompt, seed, index, and
    path or error): it goes into the PNG's metadata, the sidecar, the manifest, and stdout.
    Exits non-zero at the end if any image failed."""
    w = _Writer(p, base, out, log)
    for job, message in p.failed:
        common.err.print(f"error: {message}", markup=False)
        for k in range(job.n):
            w.emit(w.record(job, seed_of(job, k), job.first + k, error=message))
    if not out.quiet and p.work:
        seeds = sorted({j.seed for j in p.work})
        common.err.print(f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}", markup=False)
    t0 = time.perf_counter()
    try:
        w.render(events)
    finally:  # what finished, also when a failure or an interrupt ends the run
        if out.parquet is not None and log is not None:
            from janus_cli.cli import tables

            tables.write_parquet(log.records(), out.parquet)
    seconds = time.perf_counter() - t0
    if out.mode == "json":
        typer.echo(json.dumps({"images": w.records, "seconds": round(seconds, 3)}, ensure_ascii=False, indent=2))
    if not out.quiet and w.made:
        common.err.print(f"{terminal.plural(w.made, 'image')} in {seconds:.1f}s ({w.made / seconds:.3f} images/s), {common.peak_memory()}", markup=False)
    failed = len(w.records) - w.made
    if failed:
        raise common.fail(f"{failed} of {len(w.records)} images failed", 1)


class _Writer:
    """Writes a run's images and records as they arrive."""

    def __init__(self, p: Plan, base: dict, out: Output, log: Manifest | None):
        self.p, self.base, self.out, self.log = p, base, out, log
        self.waiting = {j.first + k: j for j in p.work for k in range(j.n)}  # run index -> job
        self.records: list[dict] = []
        self.made = 0

    def record(self, job: Job, seed: int, index: int, **outcome) -> dict:
        return {**self.base, **job.options, "prompt": job.prompt, "seed": seed, "index": index, **outcome}

    def emit(self, record: dict) -> None:
        if self.log is not None:
            self.log.append(record)
        self.records.append(record)
        if self.out.mode == "jsonl":
            terminal.result(json.dumps(record, ensure_ascii=False))
        elif self.out.mode == "text" and "path" in record:
            terminal.result(record["path"])

    def render(self, events: Iterator) -> None:
        from janus_cli.imageio import save_png
        from janus_cli.pipelines.events import ImageFailed, ImageReady, Step

        total = len(self.waiting)
        with terminal.progress(self.out.quiet) as bar:
            task = bar.add_task("generating", total=total)
            for event in events:
                if isinstance(event, Step):
                    bar.update(task, completed=total * event.done / event.total)
                elif event.index not in self.waiting:  # made already: a batch re-run after its worker died
                    continue
                elif isinstance(event, ImageFailed):
                    if not self.out.keep_going:
                        raise InputError(event.error)
                    common.err.print(f"error: {event.error}", markup=False)
                    self.emit(self.record(self.waiting.pop(event.index), event.seed, event.index, error=event.error))
                elif isinstance(event, ImageReady):
                    job, path = self.waiting.pop(event.index), self.p.paths[event.index]
                    record = self.record(job, event.seed, event.index, path=str(path))
                    save_png(event.pixels, path, output.png_metadata(record), self.out.overwrite)
                    if self.out.sidecar:
                        output.write_sidecar(path, record, self.out.overwrite)
                    self.emit(record)
                    preview.show(path, self.out.quiet)
                    self.made += 1
