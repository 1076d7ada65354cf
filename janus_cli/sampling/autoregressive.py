"""Autoregressive image-token generation with logit-level CFG and a static KV cache.

Rows are laid out `[cond x N; uncond x N]`. Each distinct prompt row is prefilled once and its
cache shared by the images that use it, so J prompts cost 2J prefill rows, not 2N. Prompts of
different lengths share a batch by left padding (see `Llama.forward`'s `pad`).
"""

from __future__ import annotations

import functools
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
    compile: bool = False,
) -> Iterator[Tensor]:
    """Yield the (N,) codes chosen at each of STEPS steps for N = len(IMAGE_PROMPT) images.

    Args:
        model: a JanusModel.
        prompts/unconds: conditional and unconditional ids of J prompts (unconds[j] has the
            length of prompts[j]).
        image_prompt: for each image, the index of its prompt in PROMPTS.
        cfg: guidance scale; 1 runs no unconditional rows at all.
        sampler: (N, V_img) guided logits -> (N,) codes.
        compile: run each token step as `fixed_step` under torch.compile (see compiled_step).
    """
    llm = model.language_model
    device = llm.model.embed_tokens.weight.device
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
    # (groups*N,)
    rows = torch.tensor([p + g * j for g in range(groups) for p in image_prompt], device=device)
    llm.expand_cache(rows)
    pad = None if pad is None else pad[rows]
    logits = model.image_logits(hidden[rows])  # (groups*N, V_img)
    step = compiled_step(device.type) if compile else None
    slot = torch.tensor([length], device=device)  # (1,) where the next code goes, advanced on device
    n = len(image_prompt)
    for i in range(steps):
        if guided:
            logits = apply_cfg(logits[:n], logits[n:], cfg)
        codes = sampler(logits)  # (N,)
        yield codes
        if i + 1 == steps:  # the last code is never fed back
            break
        fed = codes.repeat(groups)  # (groups*N,)
        if step is None:  # eager: attention reads only the filled part of the cache
            end = length + i + 1
            hidden = llm(model.code_embeds(fed[:, None]), positions[end - 1 : end], used=end, pad=pad)[:, -1]
            logits = model.image_logits(hidden)
        else:
            logits = step(model, fed, slot, pad).clone()  # clone: a CUDA graph reuses its output
            slot += 1


def fixed_step(model, codes: Tensor, slot: Tensor, pad: Tensor | None) -> Tensor:
    """Feed CODES (R,) at cache slot SLOT (1,) and return the next image logits (R, V_img).

    Attention covers the whole cache under a mask, so every step has the same shapes and the
    position is a tensor: one compiled graph (and one CUDA graph) serves all 576 steps.
    """
    llm = model.language_model
    hidden = llm(model.code_embeds(codes[:, None]), slot, used=None, pad=pad)[:, -1]  # (R, C)
    return model.image_logits(hidden)


@functools.cache
def compiled_step(device_type: str):
    """fixed_step under torch.compile; on CUDA also captured as a CUDA graph ("reduce-overhead").
    Compiled per batch shape and kept for the process, so later batches of a shape reuse it."""
    mode = "reduce-overhead" if device_type == "cuda" else None
    return torch.compile(fixed_step, mode=mode, dynamic=False)
