"""A JanusFlow batch run one Euler step at a time, so the scheduler can interleave and cancel.

Flow rows at different timesteps could share a forward, but the prefix cache, the time token
and the velocity CFG of `sample_flow` are per batch; requests that are queued together share one
batch instead (`generate_flow_batch`, the very function `janus flow-generate` runs), each image
keeping its own noise, so an image is the same whatever it was batched with.
"""

from __future__ import annotations

from typing import Any

from janus_cli.pipelines.batching import ImageJob
from janus_cli.pipelines.events import ImageReady, Step
from janus_cli.pipelines.text_to_image_flow import generate_flow_batch


class FlowRun:
    """One `generate_flow_batch` of (job, k) images; `tick` runs one step or decodes one image."""

    def __init__(self, session, vae, images: list[tuple[Any, int]]):
        self.llm = session.model.language_model
        self.images = images  # (the scheduler's job, k) in batch order
        batch = [(ImageJob(job.prompt, job.settings), k) for job, k in images]
        self.steps = images[0][0].settings.steps
        self.run = generate_flow_batch(session, vae, batch)
        self.state = None  # the llm cache between ticks (text rows use the llm in between)
        self.done = 0  # Euler steps done
        self.ready = 0  # images decoded

    def jobs(self) -> set:
        return {job for job, _ in self.images}

    def tick(self) -> tuple[str, Any] | None:
        """Advance by one event: ("step", steps done), ("image", ((job, k), seed, pixels)),
        or None when the run is over."""
        if self.state is not None:
            self.llm.use_cache_state(self.state)
        event = next(self.run, None)
        self.state = self.llm.cache_state()
        if isinstance(event, Step):
            self.done += 1
            return "step", self.done
        if isinstance(event, ImageReady):
            self.ready += 1
            return "image", (self.images[self.ready - 1], event.seed, event.pixels)
        return None

    def close(self) -> None:
        self.run.close()
        self.llm.free_cache()
        self.state = None
