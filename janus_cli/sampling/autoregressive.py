"""Autoregressive image-token generation with logit-level CFG and a static KV cache.

Rows are laid out `[cond x N; uncond x N]`. Each distinct prompt row is prefilled once and its
cache shared by the N rows that use it, so the prompt costs 2 rows, not 2N.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from janus_cli.sampling.logits import Sampler, apply_cfg


@torch.inference_mode()
def generate_image_tokens(
    model,
    prompt: list[int],
    uncond: list[int],
    n: int,
    cfg: float,
    sampler: Sampler,
    steps: int,
) -> Iterator[Tensor]:
    """Yield the (N,) codes chosen at each of STEPS steps for N images of one prompt.

    Args:
        model: a JanusModel. prompt/uncond: conditional and unconditional ids (same length).
        cfg: guidance scale; 1 runs no unconditional rows at all.
        sampler: (N, V_img) guided logits -> (N,) codes.
    """
    llm = model.language_model
    device = llm.lm_head.weight.device
    guided = cfg != 1.0
    distinct = torch.tensor([prompt, uncond] if guided else [prompt], device=device)  # (P, L)
    length = distinct.shape[1]
    llm.setup_cache(rows=distinct.shape[0], length=length + steps)
    positions = torch.arange(length + steps, device=device)

    hidden = llm(llm.model.embed_tokens(distinct), positions[:length], used=length)[:, -1]  # (P, C)
    rows = torch.arange(distinct.shape[0], device=device).repeat_interleave(n)  # [0]*N + [1]*N
    llm.expand_cache(rows)
    hidden = hidden[rows]  # (P*N, C)
    for step in range(steps):
        logits = model.image_logits(hidden)  # (P*N, V_img)
        if guided:
            logits = apply_cfg(logits[:n], logits[n:], cfg)
        codes = sampler(logits)  # (N,)
        yield codes
        if step + 1 < steps:  # the last code is never fed back
            x = model.code_embeds(codes.repeat(distinct.shape[0])[:, None])  # (P*N, 1, C)
            end = length + step + 1
            hidden = llm(x, positions[end - 1 : end], used=end)[:, -1]
