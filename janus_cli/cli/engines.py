"""Where an image command's forwards run: in this process (--engine local) or on a Ray
cluster (--engine ray). Either way the command plans, checks and writes the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from janus_cli.cli import common


def ray_options(engine: common.EngineName, address: str | None, workers: int, gpus: float, cpus: int, quiet: bool):
    """RayOptions for --engine ray (Ray checked to be installed before any work), else None."""
    if engine is common.EngineName.local:
        return None
    from janus_cli.distributed.cluster import RayOptions, import_ray

    import_ray()
    return RayOptions(address, workers, gpus, cpus, quiet)


@dataclass
class ImageEngine:
    session: object  # the loaded model (local), or its config and tokenizer only (the Ray driver)
    dtype: str  # what the model runs in, for the records
    ray: object | None = None  # RayOptions
    ref: object | None = None  # ModelRef for the workers
    task: object | None = None  # ImageTask for the workers

    def events(self, jobs: list, batch_size: int, local: Callable[[], Iterator]) -> Iterator:
        """The events of making JOBS: LOCAL() here, or the same forward batches on Ray."""
        if self.ray is None:
            return local()
        from janus_cli.distributed.image_job import image_events

        return image_events(self.ray, self.ref, self.task, jobs, batch_size)


def open_images(ray, model: str, device: str, dtype: str, revision: str | None, quantize: str, quiet: bool, family: str, command: str,
                vae: str | None = None, compile: bool = False) -> ImageEngine:  # fmt: skip
    """Load the model here, or, for Ray, only what the driver needs to check the work."""
    if ray is None:
        session = common.open_model(model, device, dtype, revision, quiet, quantize, compile, common.GENERATION)
        session.require(family, command)
        return ImageEngine(session, str(session.dtype).removeprefix("torch."))
    from janus_cli.distributed.cluster import ModelRef
    from janus_cli.distributed.image_job import ImageTask, light_session, worker_dtype
    from janus_cli.runtime import choose_quantize

    choose_quantize(quantize)  # a bad value fails here, not in every worker
    ref, task = ModelRef(model, device, dtype, revision, quantize, compile, common.GENERATION), ImageTask(family, command, vae)
    return ImageEngine(light_session(ref, task, quiet), worker_dtype(ref, ray), ray, ref, task)
