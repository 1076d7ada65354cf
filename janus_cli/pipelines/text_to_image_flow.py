"""JanusFlow text-to-image: prompt -> rectified-flow Euler steps (velocity CFG) -> SDXL-VAE decode."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from janus_cli.errors import InputError
from janus_cli.imageio import to_uint8
from janus_cli.models.vae import VAEDecoder
from janus_cli.pipelines.batching import Image, ImageJob, seed_for
from janus_cli.pipelines.checks import number, one_of
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

    CHECKS = {
        "n": number(int, 1),
        "seed": number(int, 0),
        "cfg": number(float, 0),
        "steps": number(int, 1),
        "noise": one_of(*NOISE_MODES),
    }

    def batch_key(self) -> tuple:
        """What must agree for images to share a forward (one step count, one CFG weight)."""
        return self.steps, self.cfg

    def image_seed(self, k: int) -> int:
        """The seed recorded for image K: per-image noise re-makes it alone from seed + k; the
        official noise only as part of the whole run from seed."""
        return seed_for(self.seed, k) if self.noise == "per-image" else self.seed

    def options(self) -> dict:
        """The sampling settings an image's recipe records (the noise mode is the run's)."""
        return {"cfg": self.cfg, "steps": self.steps}


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
    return torch.cat(
        [
            torch.randn((1, *shape), dtype=NOISE_DTYPE, generator=make_generator(seed_for(seed, k)))
            for k in range(n)
        ]
    )


def generate_flow_batch(
    session: Session, vae: VAEDecoder, batch: list[Image], encoded: dict | None = None
) -> Iterator[Step | ImageReady]:
    """The images of BATCH in one forward (they share `batch_key`); Step counts Euler steps.
    ENCODED maps prompts to their `flow_prompt_ids` when the caller has them already."""
    prompts = list(dict.fromkeys(job.prompt for job, _ in batch))  # distinct, in batch order
    ids = [encoded[p] if encoded and p in encoded else flow_prompt_ids(session, p) for p in prompts]
    steps, cfg = batch[0][0].settings.batch_key()
    draws: dict[ImageJob, Tensor] = {}  # the official noise is one draw of a whole job
    for job, _ in batch:
        if job not in draws:
            s = job.settings
            draws[job] = (
                initial_noise(s.n, s.seed, s.noise, latent_shape(session)) if s.noise == "official" else None
            )
    z = torch.cat(
        [
            draws[job][k : k + 1]
            if draws[job] is not None
            else initial_noise(1, job.seed_of(k), "per-image", latent_shape(session))
            for job, k in batch
        ]
    ).to(session.device, session.dtype)  # (B, L, H, W)
    image_prompt = [prompts.index(job.prompt) for job, _ in batch]
    for step, latent in enumerate(
        sample_flow(session.model, [c for c, _ in ids], [u for _, u in ids], image_prompt, z, steps, cfg)
    ):
        z = latent
        yield Step((step + 1) * len(batch), steps * len(batch))
    session.model.language_model.free_cache()
    for (job, k), latent in zip(
        batch, z.split(1), strict=True
    ):  # one image at a time, as text_to_image decodes
        with torch.inference_mode():
            image = to_uint8(vae.decode(latent))[0]  # (384, 384, 3)
        yield ImageReady(job.first + k, job.seed_of(k), job.prompt, image)
