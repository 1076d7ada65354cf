"""JanusFlow text-to-image: prompt -> rectified-flow Euler steps (velocity CFG) -> SDXL-VAE decode."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from janus_cli.errors import InputError
from janus_cli.imageio import to_uint8
from janus_cli.models.vae import VAEDecoder
from janus_cli.pipelines.batching import batches
from janus_cli.pipelines.events import ImageReady, Step
from janus_cli.pipelines.session import Session
from janus_cli.prompts import generation_ids
from janus_cli.runtime import make_generator
from janus_cli.sampling.flow import sample_flow

NOISE_MODES = ("per-image", "official")
NOISE_DTYPE = torch.bfloat16  # the official demo draws bf16 noise; kept so seeds give its images


@dataclass(frozen=True)
class FlowSettings:
    n: int = 1
    steps: int = 30
    cfg: float = 2.0
    seed: int = 0
    # per-image: image k has its own noise from seed + k (the same image whatever n is);
    # official: one draw of all N latents from seed, like `torch.manual_seed(seed)` in the demo.
    noise: str = "per-image"
    batch_size: int = 4  # images per forward (each uses 2 rows with CFG)


def latent_shape(session: Session) -> tuple[int, int, int]:
    """(L, H, W) of one latent: 4 x 48 x 48 (the 24 x 24 token grid, patches of 2)."""
    side = 2 * int(session.config.image_tokens**0.5)
    return (session.config.flow.latent_channels, side, side)


def flow_prompt_ids(session: Session, prompt: str) -> tuple[list[int], list[int]]:
    """Conditional ids (ending with `<｜begin▁of▁generation｜>`) and the unconditional ids
    (BOS, then the pad id at positions 1…end), checked to fit the context with the time
    token and the latent tokens (L' + 1 + 576 where L' = len(ids) − 1)."""
    tok = session.tokenizer
    ids = generation_ids(tok, prompt, tag=tok.special.gen)
    context = session.config.llm.context_length
    need = len(ids) - 1 + 1 + session.config.image_tokens
    if need > context:
        limit = context - session.config.image_tokens
        raise InputError(f"prompt is {len(ids)} tokens; at most {limit} fit with the image in the context")
    return ids, [ids[0], *[tok.special.pad] * (len(ids) - 1)]


def initial_noise(n: int, seed: int, mode: str, shape: tuple[int, ...]) -> Tensor:
    """(N, *SHAPE) bf16 noise on the CPU, from explicit generators (never the global RNG).

    per-image: image k is `randn((1, *SHAPE), generator=seed + k)`; official: one
    `randn((N, *SHAPE))` from SEED, identical to `torch.manual_seed(seed); torch.randn(...)`.
    """
    if mode == "official":
        return torch.randn((n, *shape), dtype=NOISE_DTYPE, generator=make_generator(seed))
    if mode != "per-image":
        raise InputError(f"noise {mode!r}: choose {' or '.join(NOISE_MODES)}")
    return torch.cat([torch.randn((1, *shape), dtype=NOISE_DTYPE, generator=make_generator(seed + k)) for k in range(n)])


def image_seed(s: FlowSettings, k: int) -> int:
    """The seed recorded for image K: per-image noise re-makes it alone from seed + k; the
    official noise only as part of the whole run from seed."""
    return s.seed + k if s.noise == "per-image" else s.seed


def generate_flow_images(
    session: Session, vae: VAEDecoder, prompt: str, s: FlowSettings, first_index: int = 0
) -> Iterator[Step | ImageReady]:
    """Make S.n images of PROMPT with S.steps Euler steps each, S.batch_size at a time."""
    return generate_flow_jobs(session, vae, [(prompt, s, first_index)], s.batch_size)


def generate_flow_jobs(
    session: Session, vae: VAEDecoder, jobs: list[tuple[str, FlowSettings, int]], batch_size: int
) -> Iterator[Step | ImageReady]:
    """The images of every (prompt, settings, first index) job, BATCH_SIZE per forward, in
    run order; consecutive images share a batch even when their prompts differ (if their
    steps and cfg agree). Each image keeps its own noise, so batching never changes it."""
    model = session.model
    ids = {prompt: flow_prompt_ids(session, prompt) for prompt, _, _ in jobs}  # refuse a long prompt before any work
    noise = [initial_noise(s.n, s.seed, s.noise, latent_shape(session)) for _, s, _ in jobs]  # (n, L, H, W) bf16 each
    images = [(j, k) for j, (_, s, _) in enumerate(jobs) for k in range(s.n)]
    total, done = sum(jobs[j][1].steps for j, _ in images), 0
    for batch in batches(images, lambda image: (jobs[image[0]][1].steps, jobs[image[0]][1].cfg), batch_size):
        prompts = list(dict.fromkeys(jobs[j][0] for j, _ in batch))  # distinct, in batch order
        steps, cfg = jobs[batch[0][0]][1].steps, jobs[batch[0][0]][1].cfg
        z = torch.stack([noise[j][k] for j, k in batch]).to(session.device, session.dtype)  # (B, L, H, W)
        image_prompt = [prompts.index(jobs[j][0]) for j, _ in batch]
        cond, uncond = [ids[p][0] for p in prompts], [ids[p][1] for p in prompts]
        for step, latent in enumerate(sample_flow(model, cond, uncond, image_prompt, z, steps, cfg)):
            z = latent
            yield Step(done + (step + 1) * len(batch), total)
        done += steps * len(batch)
        session.model.language_model.free_cache()
        with torch.inference_mode():
            pixels = to_uint8(vae.decode(z))  # (B, 384, 384, 3)
        for (j, k), image in zip(batch, pixels):
            prompt, s, first = jobs[j]
            yield ImageReady(first + k, image_seed(s, k), prompt, image)

