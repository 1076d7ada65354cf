"""Janus / Janus-Pro text-to-image: prompt -> 576 image tokens (CFG) -> VQ decode."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from janus_cli.errors import InputError
from janus_cli.imageio import to_uint8
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
    batch_size: int = 4  # images per forward (each uses 2 rows with CFG)


def prompt_ids(session: Session, prompt: str) -> list[int]:
    """Prompt ids, checked to leave room for the image tokens in the context."""
    ids = generation_ids(session.tokenizer, prompt)
    limit = session.config.llm.context_length - session.config.image_tokens
    if len(ids) > limit:
        raise InputError(f"prompt is {len(ids)} tokens; at most {limit} fit with the image in the context")
    return ids


def generate_images(session: Session, prompt: str, s: GenerateSettings, first_index: int = 0) -> Iterator[Step | ImageReady]:
    """Make S.n images of PROMPT. Image k uses its own generator seeded S.seed + k, so it is
    the same image whatever n or the batch size."""
    model, tok = session.model, session.tokenizer
    ids = prompt_ids(session, prompt)
    uncond = make_uncond_ids(ids, tok.special.pad)
    steps = session.config.image_tokens
    total = s.n * steps
    for start in range(0, s.n, s.batch_size):
        indices = range(start, min(s.n, start + s.batch_size))
        gens = [make_generator(s.seed + k) for k in indices]
        sampler = make_sampler(s.temperature, s.top_k, s.top_p, gens)
        columns = []
        for codes in generate_image_tokens(model, ids, uncond, len(gens), s.cfg, sampler, steps):
            columns.append(codes)
            yield Step(start * steps + len(columns) * len(gens), total)
        pixels = to_uint8(model.decode_codes(torch.stack(columns, dim=1)))  # (n, 384, 384, 3)
        for k, image in zip(indices, pixels):
            yield ImageReady(first_index + k, s.seed + k, prompt, image)
