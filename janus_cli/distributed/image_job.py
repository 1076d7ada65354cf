"""`janus generate / flow-generate --engine ray`: the local engine's forward batches
(`pipelines.batching.image_batches`) run on actors, with the local one-forward functions; the
driver renders the images as they arrive with the local `image_run.write_images`, so PNGs,
records, manifests and --resume are the local engine's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from janus_cli.distributed import cluster
from janus_cli.pipelines.batching import ImageJob, image_batches


@dataclass(frozen=True)
class ImageTask:
    """Which pipeline the actors run."""

    family: str  # "janus" (generate) or "janusflow" (flow-generate)
    command: str  # named in the family error
    vae: str | None = None  # janusflow


def light_session(ref: cluster.ModelRef, task: ImageTask, quiet: bool):
    """The checkpoint's config and tokenizer, no weights: the driver checks the family and
    every prompt's length before any work, as the local engine does."""
    import torch

    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.quantized import scheme_to_load, stored_scheme
    from janus_cli.config import JanusConfig, read_json
    from janus_cli.pipelines.session import Session
    from janus_cli.tokenizer import Tokenizer

    folder = resolve(ref.model, ref.revision, progress=cluster.show_progress(quiet))
    raw = read_json(folder / "config.json")
    config = JanusConfig.from_dict(raw)
    tokenizer = Tokenizer(folder, flow=config.family == "janusflow")
    quantize = scheme_to_load(ref.quantize, stored_scheme(raw), folder)  # what the workers will run
    cpu = torch.device("cpu")
    session = Session(ref.model, folder, config, None, tokenizer, None, cpu, torch.float32, quantize)
    session.require(task.family, task.command)
    if ref.adapter is not None:  # checked here, before any worker starts; recorded in every recipe
        from janus_cli.checkpoints.adapter import read_adapter

        session.adapter = read_adapter(ref.adapter).ref(ref.adapter)
    return session


def worker_dtype(ref: cluster.ModelRef, opts: cluster.RayOptions) -> str:
    """The dtype the workers load (for the records): --dtype as chosen on their device."""
    import torch

    from janus_cli.runtime import choose_device, choose_dtype

    device = (
        torch.device("cuda")
        if opts.gpus_per_worker and ref.device in ("auto", "cuda")
        else choose_device(ref.device)
    )
    return str(choose_dtype(ref.dtype, device)).removeprefix("torch.")


def image_events(
    opts: cluster.RayOptions, ref: cluster.ModelRef, task: ImageTask, jobs: list[ImageJob], batch_size: int
) -> Iterator:
    """ImageReady / ImageFailed events of every image of JOBS, made on the cluster in the
    local engine's forward batches, in order of completion (a re-run batch may repeat some)."""
    from janus_cli.pipelines.events import ImageFailed, ImageReady

    batches = image_batches(jobs, batch_size)
    rows = [
        {"images": json.dumps([[job.prompt, asdict(job.settings), job.first, k] for job, k in batch])}
        for batch in batches
    ]
    for row in cluster.stream(
        rows, ImageWorker, {"ref": ref, "task": task, "threads": opts.cpus_per_worker}, opts
    ):
        if row["error"]:
            yield ImageFailed(row["index"], row["seed"], row["prompt"], row["error"])
        else:
            pixels = np.frombuffer(row["pixels"], np.uint8).reshape(row["height"], row["width"], 3)
            yield ImageReady(row["index"], row["seed"], row["prompt"], pixels)


class ImageWorker:
    """A Ray actor holding one copy of the model (and, for JanusFlow, the VAE)."""

    def __init__(self, ref: cluster.ModelRef, task: ImageTask, threads: int):
        model = cluster.open_model(ref, threads, task.vae)
        self.session, self.vae = model.session, model.vae

    def batch(self, images: list) -> list:
        """The (job, k) images of one local forward batch, rebuilt from their JSON."""
        if self.vae is None:
            from janus_cli.pipelines.text_to_image import GenerateSettings as Settings
        else:
            from janus_cli.pipelines.text_to_image_flow import FlowSettings as Settings
        jobs: dict[str, ImageJob] = {}  # one ImageJob per job, so a batch sees a job once
        out = []
        for prompt, settings, first, k in images:
            key = json.dumps([prompt, settings, first])
            jobs.setdefault(key, ImageJob(prompt, Settings(**settings), first))
            out.append((jobs[key], k))
        return out

    def __call__(self, batch: dict) -> dict:
        from janus_cli.pipelines.events import ImageReady

        out: dict[str, list] = {
            "index": [],
            "seed": [],
            "prompt": [],
            "pixels": [],
            "height": [],
            "width": [],
            "error": [],
        }

        def add(
            index: int,
            seed: int,
            prompt: str,
            pixels: bytes = b"",
            height: int = 0,
            width: int = 0,
            error: str = "",
        ) -> None:
            for key, value in zip(out, (index, seed, prompt, pixels, height, width, error), strict=True):
                out[key].append(value)

        for images in batch["images"]:
            work = self.batch(json.loads(images))
            if self.vae is None:
                from janus_cli.pipelines.text_to_image import generate_batch

                events = generate_batch(self.session, work)
            else:
                from janus_cli.pipelines.text_to_image_flow import generate_flow_batch

                events = generate_flow_batch(self.session, self.vae, work)
            made = set()
            try:
                for event in events:
                    if isinstance(event, ImageReady):
                        made.add(event.index)
                        add(
                            event.index,
                            event.seed,
                            event.prompt,
                            event.pixels.tobytes(),
                            *event.pixels.shape[:2],
                        )
            except Exception as e:  # a failed forward fails its images, not the job
                for job, k in work:
                    if job.first + k not in made:
                        add(
                            job.first + k,
                            job.seed_of(k),
                            job.prompt,
                            error=f"image {job.first + k}: {cluster.describe_error(e)}",
                        )
        return out
