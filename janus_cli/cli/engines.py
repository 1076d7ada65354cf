"""Where an image command's forwards run: in this process (--engine local) or on a Ray
cluster (--engine ray). Either way the command plans, checks and writes the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from janus_cli.cli import console
from janus_cli.cli.options import EngineName


def ray_options(engine: EngineName, address: str | None, workers: int, gpus: float, cpus: int, quiet: bool):
    """RayOptions for --engine ray (Ray checked to be installed before any work), else None."""
    if engine is EngineName.local:
        return None
    from janus_cli.distributed.cluster import RayOptions, import_ray

    import_ray()
    return RayOptions(address, workers, gpus, cpus, quiet)


@dataclass
class ImageEngine:
    session: object  # the loaded model's Session (local), or its config and tokenizer only (the Ray driver)
    dtype: str  # what the model runs in, for the records
    vae: object | None = None  # JanusFlow's decoder (local)
    ray: object | None = None  # RayOptions
    ref: object | None = None  # ModelRef for the workers
    task: object | None = None  # ImageTask for the workers

    def events(self, jobs: list, batch_size: int, local: Callable[[], Iterator]) -> Iterator:
        """The events of making JOBS: LOCAL() here, or the same forward batches on Ray."""
        if self.ray is None:
            return local()
        from janus_cli.distributed.image_job import image_events

        return image_events(self.ray, self.ref, self.task, jobs, batch_size)


def open_images(req) -> ImageEngine:
    """Load the model here (or use REQ.loaded), or, for Ray, only what the driver needs to check
    the work. REQ: an image_run.Request."""
    if req.ray is None:
        model = req.loaded or console.open_model(
            req.model,
            req.device,
            req.dtype,
            req.revision,
            req.out.quiet,
            req.quantize,
            req.compile,
            console.GENERATION,
            req.vae,
            req.adapter,
        )
        model.session.require(req.family, req.command)
        return ImageEngine(model.session, str(model.session.dtype).removeprefix("torch."), model.vae)
    from janus_cli.distributed.cluster import ModelRef
    from janus_cli.distributed.image_job import ImageTask, light_session, worker_dtype
    from janus_cli.runtime import choose_quantize

    choose_quantize(req.quantize)  # a bad value fails here, not in every worker
    ref = ModelRef(
        req.model,
        req.device,
        req.dtype,
        req.revision,
        req.quantize,
        req.compile,
        console.GENERATION,
        adapter_path(req.adapter),
    )
    task = ImageTask(req.family, req.command, req.vae)
    return ImageEngine(
        light_session(ref, task, req.out.quiet), worker_dtype(ref, req.ray), None, req.ray, ref, task
    )


def adapter_path(adapter: str | None) -> str | None:
    """--adapter for Ray workers: an absolute path (they do not share this process's working
    folder; on a cluster of several machines it must be on a file system they all see)."""
    from pathlib import Path

    return None if adapter is None else str(Path(adapter).expanduser().resolve())
