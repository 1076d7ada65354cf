"""Janus / Janus-Pro text-to-image: prompt -> 576 image tokens (CFG) -> VQ decode."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from janus_cli.errors import InputError
from janus_cli.imageio import to_uint8
from janus_cli.pipelines.batching import Image, seed_for
from janus_cli.pipelines.checks import number
from janus_cli.pipelines.events import ImageReady, Step
from janus_cli.pipelines.session import Session
from janus_cli.prompts import generation_ids, make_uncond_ids
from janus_cli.runtime import make_generator
from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.logits import make_sampler


@dataclass(frozen=True)
class GenerateSettings:
    n: int = 1
    cfg: float = 5.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    CHECKS = {
        "n": number(int, 1),
        "seed": number(int, 0),
        "cfg": number(float, 0),
        "temperature": number(float, 0),
        "top_k": number(int, 1, optional=True),
        "top_p": number(float, 1e-9, 1, optional=True),
    }

    def batch_key(self) -> tuple:
        """What must agree for images to share a forward (one CFG scale, one sampler)."""
        return self.cfg, self.temperature, self.top_k, self.top_p

    def image_seed(self, k: int) -> int:
        return seed_for(self.seed, k)

    def options(self) -> dict:
        """The sampling settings an image's recipe records."""
        return {"cfg": self.cfg, "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


def prompt_ids(session: Session, prompt: str) -> list[int]:
    """Prompt ids, checked to leave room for the image tokens in the context."""
    ids = generation_ids(session.tokenizer, prompt)
    limit = session.config.llm.context_length - session.config.image_tokens
    if len(ids) > limit:
        raise InputError(f"prompt is {len(ids)} tokens; at most {limit} fit with the image in the context")
    return ids


def generate_batch(
    session: Session, batch: list[Image], encoded: dict | None = None
) -> Iterator[Step | ImageReady]:
    """The images of BATCH in one forward (they share `batch_key`); Step counts image tokens.
    ENCODED maps prompts to their `prompt_ids` when the caller has them already."""
    model, tok = session.model, session.tokenizer
    steps = session.config.image_tokens
    prompts = list(dict.fromkeys(job.prompt for job, _ in batch))  # distinct, in batch order
    cond = [encoded[p] if encoded and p in encoded else prompt_ids(session, p) for p in prompts]
    uncond = [make_uncond_ids(p, tok.special.pad) for p in cond]
    cfg, temperature, top_k, top_p = batch[0][0].settings.batch_key()
    sampler = make_sampler(temperature, top_k, top_p, [make_generator(job.seed_of(k)) for job, k in batch])
    image_prompt = [prompts.index(job.prompt) for job, _ in batch]
    columns = []
    for codes in generate_image_tokens(
        model, cond, uncond, image_prompt, cfg, sampler, steps, session.compile
    ):
        columns.append(codes)
        yield Step(len(columns) * len(batch), steps * len(batch))
    model.language_model.free_cache()  # the decoder's activations need the room
    # One image at a time: the decoder's activations do not grow with the batch, and an image's
    # pixels depend on its tokens only, not on what it was batched with.
    for (job, k), codes in zip(batch, torch.stack(columns, dim=1).split(1), strict=True):  # (1, 576) each
        image = to_uint8(model.decode_codes(codes))[0]  # (384, 384, 3)
        yield ImageReady(job.first + k, job.seed_of(k), job.prompt, image)
