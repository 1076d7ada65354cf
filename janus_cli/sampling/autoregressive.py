"""Autoregressive image-token generation with logit-level CFG and a static KV cache.

Rows are laid out `[cond x N; uncond x N]`. Each distinct prompt row is prefilled once and its
cache shared by the images that use it, so J prompts cost 2J prefill rows, not 2N. Prompts of
different lengths share a batch by left padding (see `Llama.forward`'s `pad`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from janus_cli.sampling.logits import Sampler, apply_cfg

PAD_FILL = 0  # the id put in left padding; never attended, so any valid id will do


@torch.inference_mode()
def generate_image_tokens(
    model,
    prompts: list[list[int]],
    unconds: list[list[int]],
    image_prompt: list[int],
    cfg: float,
    sampler: Sampler,
    steps: int,
) -> Iterator[Tensor]:
    """Yield the (N,) codes chosen at each of STEPS steps for N = len(IMAGE_PROMPT) images.

    Args:
        model: a JanusModel.
        prompts/unconds: conditional and unconditional ids of J prompts (unconds[j] has the
            length of prompts[j]).
        image_prompt: for each image, the index of its prompt in PROMPTS.
        cfg: guidance scale; 1 runs no unconditional rows at all.
        sampler: (N, V_img) guided logits -> (N,) codes.
    """
    llm = model.language_model
    device = llm.lm_head.weight.device
    guided = cfg != 1.0
    groups = 2 if guided else 1
    distinct = prompts + unconds if guided else list(prompts)  # P = groups * J rows
    length = max(len(p) for p in distinct)
    padded = torch.tensor([[PAD_FILL] * (length - len(p)) + p for p in distinct], device=device)  # (P, L)
    pads = [length - len(p) for p in distinct]
    pad = torch.tensor(pads, device=device) if any(pads) else None  # (P,); None: the mask-free step
    llm.setup_cache(rows=len(distinct), length=length + steps)
    positions = torch.arange(length + steps, device=device)

    hidden = llm(llm.model.embed_tokens(padded), positions[:length], used=length, pad=pad)[:, -1]  # (P, C)
    j = len(prompts)
    rows = torch.tensor([p + g * j for g in range(groups) for p in image_prompt], device=device)  # (groups*N,)
    llm.expand_cache(rows)
    hidden = hidden[rows]  # (groups*N, C)
    pad = None if pad is None else pad[rows]
    n = len(image_prompt)
    for step in range(steps):
        logits = model.image_logits(hidden)  # (groups*N, V_img)
        if guided:
            logits = apply_cfg(logits[:n], logits[n:], cfg)
        codes = sampler(logits)  # (N,)
        yield codes
        if step + 1 < steps:  # the last code is never fed back
            x = model.code_embeds(codes.repeat(groups)[:, None])  # (groups*N, 1, C)
            end = length + step + 1
            hidden = llm(x, positions[end - 1 : end], used=end, pad=pad)[:, -1]
