"""The sample grid's images: fixed prompts and seeds, made by the inference pipeline on the
model being trained, with its LoRA on (adapter) and off (base)."""

from __future__ import annotations

import numpy as np

from janus_cli.pipelines.batching import ImageJob
from janus_cli.pipelines.events import ImageReady
from janus_cli.pipelines.text_to_image import GenerateSettings, generate_batch
from janus_cli.training.lora import set_enabled


def sample_images(session, loras: dict, prompts: list[str], seed: int, adapter: bool) -> list[np.ndarray]:
    """One (384, 384, 3) uint8 image per prompt, image k seeded SEED + k, the LoRA on when
    ADAPTER (else the base model), with `janus generate`'s default sampling."""
    set_enabled(loras, adapter)
    try:
        images = []
        for k, prompt in enumerate(prompts):
            job = ImageJob(prompt, GenerateSettings(n=1, seed=seed + k), first=k)
            images += [e.pixels for e in generate_batch(session, [(job, 0)]) if isinstance(e, ImageReady)]
        return images
    finally:
        set_enabled(loras, True)
