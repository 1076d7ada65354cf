"""One image command's run, shared by `generate`, `flow-generate` and chat's `/imagine`: the
work list, names planned up front, --manifest / --resume / --keep-going, and rendering the
events (progress on stderr; PNGs with their recipe and optional JSON sidecars; paths, one
JSON document or JSON lines on stdout; a timing summary on stderr). What makes the images is
the library's (pipelines/images.py), here or on Ray."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import typer

from janus_cli.cli import console, engines, inputs, jobs, preview, terminal
from janus_cli.cli.manifest import Manifest
from janus_cli.cli.naming import Names, write_sidecar
from janus_cli.errors import InputError
from janus_cli.pipelines.batching import ImageJob, pick_seed, select_images


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

    def check_writable(self) -> None:
        """Refuse, before the model loads, outputs that cannot be written."""
        from janus_cli.files import check_writable

        target = Path(self.target)
        check_writable(target if target.suffix.lower() == ".png" or "{" in self.target else target / "x.png")
        if self.manifest:
            check_writable(Path(self.manifest))


@dataclass(frozen=True)
class Request:
    """What an image command asks for."""

    family: str  # "janus" or "janusflow"
    command: str  # named in errors
    lines: list[dict]  # prompt lines (jobs.read_prompts)
    settings: type  # GenerateSettings or FlowSettings
    defaults: dict  # the settings' values, n and seed (None: random, or the resumed run's)
    overridable: tuple[str, ...]  # keys a prompts-file line may set
    out: Output
    model: str
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    revision: str | None = None
    compile: bool = False
    vae: str | None = None
    batch_size: int | None = None  # None: auto
    shard: tuple[int, int] | None = None
    ray: object | None = None  # RayOptions for --engine ray
    first: int = 0  # run index of the first image (chat's /imagine counts on)
    loaded: object | None = None  # a Janus already loaded (chat)
    adapter: str | None = None  # --adapter: a LoRA adapter folder merged at load


@dataclass
class Plan:
    work: list[ImageJob]  # what is left to make
    names: Names  # run index -> output path
    failed: list[tuple[ImageJob, str]] = field(default_factory=list)  # prompts refused with --keep-going


def run(req: Request) -> None:
    """Plan, load, check, make and write the images REQ asks for."""
    out = req.out
    log = out.open_manifest()
    out.check_writable()
    defaults = dict(req.defaults)
    if defaults["seed"] is None and out.resume:  # the seed the resumed run picked
        defaults["seed"] = jobs.recorded_seed(
            req.lines,
            jobs.make_jobs(req.lines, req.settings, {**defaults, "seed": 0}, req.overridable),
            log.records(),
        )
    defaults["seed"] = pick_seed(defaults["seed"])
    work = jobs.make_jobs(req.lines, req.settings, defaults, req.overridable, req.first)
    work = select_images(work, inputs.shard_range(sum(j.n for j in work), req.shard).__contains__)
    p = plan(work, req.model, out, log)
    if not p.work:
        console.err.print(
            "nothing to do: every image is made" if work else "nothing to do: this shard is empty",
            markup=False,
        )
        return
    from janus_cli.pipelines.images import batch_size, check_prompts, make_images, run_base

    engine = engines.open_images(req)
    session = engine.session
    encoded, refused = check_prompts(session, p.work, out.keep_going)
    p.failed = [(j, refused[j.prompt]) for j in p.work if j.prompt in refused]
    p.work = [j for j in p.work if j.prompt not in refused]
    size, why = (
        (req.batch_size or 4, None)
        if engine.ray is not None
        else batch_size(session, p.work, encoded, req.batch_size)
    )
    if why and not out.quiet:
        console.err.print(why, markup=False)
    extra = {"vae": req.vae or "sdxl-vae", "noise": defaults["noise"]} if req.family == "janusflow" else {}
    # the scheme that ran: a quantized checkpoint's own where --quantize was left out
    base = run_base(req.model, req.revision, engine.dtype, session.quantize, adapter=session.adapter, **extra)
    events = engine.events(p.work, size, lambda: make_images(session, p.work, size, encoded, engine.vae))
    write_images(p, events, base, out, log)


def plan(work: list[ImageJob], model: str, out: Output, log: Manifest | None) -> Plan:
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
            same = {"prompt": job.prompt, "seed": job.seed_of(k), "model": model, **job.settings.options()}
            if all(r.get(key) == value for key, value in same.items()):
                done[r["index"]] = Path(r["path"])
    planned = [
        {"index": j.first + k, "seed": j.seed_of(k), "prompt": j.prompt, "model": model}
        for j in work
        for k in range(j.n)
    ]
    names = Names(out.target, planned, out.overwrite, own=set(done.values()))
    if done and not out.quiet:
        console.err.print(f"resuming: {terminal.plural(len(done), 'image')} already made", markup=False)
    return Plan(select_images(work, lambda i: i not in done), names)


def write_images(p: Plan, events: Iterator, base: dict, out: Output, log: Manifest | None) -> None:
    """Render EVENTS (Step, ImageReady, ImageFailed of P.work's images, in any order) and
    P.failed. Every image gets a record (its recipe, and path or error): it goes into the PNG's
    metadata, the sidecar, the manifest, and stdout. Exits non-zero at the end if any failed."""
    w = _Writer(p, base, out, log)
    for job, message in p.failed:
        console.err.print(f"error: {message}", markup=False)
        for k in range(job.n):
            w.emit(w.record(job, k, error=message))
    if not out.quiet and p.work:
        seeds = sorted({j.settings.seed for j in p.work})
        console.err.print(
            f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}", markup=False
        )
    t0 = time.perf_counter()
    try:
        w.render(events)
    finally:  # what finished, also when a failure or an interrupt ends the run
        if out.parquet is not None and log is not None:
            from janus_cli.cli import tables

            tables.write_parquet(log.records(), out.parquet)
    seconds = time.perf_counter() - t0
    if out.mode == "json":
        typer.echo(
            json.dumps({"images": w.records, "seconds": round(seconds, 3)}, ensure_ascii=False, indent=2)
        )
    if not out.quiet and w.made:
        console.err.print(
            f"{terminal.plural(w.made, 'image')} in {seconds:.1f}s ({w.made / seconds:.3f} "
            f"images/s), {console.peak_memory()}",
            markup=False,
        )
    failed = len(w.records) - w.made
    if failed:
        raise console.fail(f"{failed} of {len(w.records)} images failed", 1)


class _Writer:
    """Writes a run's images and records as they arrive."""

    def __init__(self, p: Plan, base: dict, out: Output, log: Manifest | None):
        self.p, self.base, self.out, self.log = p, base, out, log
        self.waiting = {j.first + k: (j, k) for j in p.work for k in range(j.n)}  # run index -> (job, k)
        self.records: list[dict] = []
        self.made = 0

    def record(self, job: ImageJob, k: int, **outcome) -> dict:
        from janus_cli.pipelines.images import recipe

        return {**recipe(self.base, job, k), **outcome}

    def emit(self, record: dict) -> None:
        if self.log is not None:
            self.log.append(record)
        self.records.append(record)
        if self.out.mode == "jsonl":
            terminal.result(json.dumps(record, ensure_ascii=False))
        elif self.out.mode == "text" and "path" in record:
            terminal.result(record["path"])

    def save(self, index: int, pixels, record: dict) -> dict:
        """Write the PNG (and sidecar) under the image's planned name, or, when another run
        took that name meanwhile, under the next free run number."""
        from janus_cli.files import PathTaken
        from janus_cli.imageio import png_metadata, save_png

        while True:
            path = self.p.names[index]
            record = {**record, "path": str(path)}
            try:
                save_png(pixels, path, png_metadata(record), self.out.overwrite)
                break
            except PathTaken:
                if not self.p.names.next_run():
                    raise
        self.p.names.wrote(index)
        if self.out.sidecar:
            write_sidecar(path, record, self.out.overwrite)
        return record

    def render(self, events: Iterator) -> None:
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
                    console.err.print(f"error: {event.error}", markup=False)
                    self.emit(self.record(*self.waiting.pop(event.index), error=event.error))
                elif isinstance(event, ImageReady):
                    job, k = self.waiting.pop(event.index)
                    record = self.save(event.index, event.pixels, self.record(job, k))
                    self.emit(record)
                    preview.show(record["path"], self.out.quiet)
                    self.made += 1
