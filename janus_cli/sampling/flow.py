"""Rectified-flow sampling for JanusFlow: Euler steps with velocity-level CFG.

Time convention: t goes 0→1, noise at t=0, model sees t·1000. The update is
`z ← z + dt·v(z, t)` with `dt = 1/steps` and `t = k/steps` at step k (the last step starts at
t = 1 − dt and lands on the data at t = 1).

Rows are laid out `[cond x N; uncond x N]`. The LLM sequence of a row is the prompt prefix (the
ids minus the final generation tag, L' tokens at positions 0…L'−1), the time-embedding token at
position L' (the slot of the dropped tag) and the latent tokens at L'+1…; unconditional rows
keep their positions but cannot see their prompt (positions 1…L'−1 masked, BOS visible). The
prefix is the same at every step: it is prefilled once for the 2 distinct rows, shared among
the 2N rows, and each step runs only the time and latent tokens, overwriting the same cache
slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from janus_cli.sampling.autoregressive import PAD_FILL
from janus_cli.sampling.logits import apply_cfg


def euler_step(z: Tensor, v: Tensor, dt: Tensor | float) -> Tensor:
    """One explicit Euler step of dz/dt = v: `z + dt·v`."""
    return z + dt * v


def time_grid(steps: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The model times of each step and the step size, in DTYPE.

    Values are made in float32 first and then cast, as the official demo does (so bfloat16
    gives its quantised times 0, 33.25, 66.5, … and dt = 0.033447265625 for 30 steps).

    Returns:
        t (steps,) on the 0..1000 scale (`k/steps·1000`), dt () = `1/steps`.
    """
    t = torch.tensor([k / steps * 1000 for k in range(steps)], dtype=torch.float32).to(dtype)
    dt = torch.tensor(1 / steps, dtype=torch.float32).to(dtype)
    return t.to(device), dt.to(device)


@dataclass
class FlowPrompt:
    """Prompt prefixes prefilled into the LLM cache, shared by the [cond x N; uncond x N] rows."""

    n: int  # images
    groups: int  # 2 with guidance (cond and uncond rows), 1 without
    length: int  # L', the (padded) prefix length
    positions: Tensor  # (1 + h*w,) cache slots of the time token and the latent tokens
    key_mask: Tensor  # (groups*N, S) bool, False at the masked prompt positions
    pad: Tensor | None  # (groups*N,) left padding of each row, None when all prompts are as long


@torch.inference_mode()
def prefill_prompt(
    model, prompts: list[list[int]], unconds: list[list[int]] | None, image_prompt: list[int], tokens: int
) -> FlowPrompt:
    """Prefill the prompt prefixes (the ids without their last token, the generation tag).

    Args:
        model: a JanusFlowModel. prompts: conditional ids of J prompts, each ending with the
            generation tag. unconds: their unconditional ids (same lengths; only their BOS is
            seen), or None for no guidance rows. image_prompt: for each image, the index of its
            prompt. tokens: latent tokens per image (h*w = 576).
    """
    llm = model.language_model
    device = llm.model.embed_tokens.weight.device
    rows = [p[:-1] for p in prompts] + ([u[:-1] for u in unconds] if unconds is not None else [])  # P rows
    length = max(len(r) for r in rows)
    pads = [length - len(r) for r in rows]
    # (P, L'), left padded
    distinct = torch.tensor([[PAD_FILL] * k + r for k, r in zip(pads, rows, strict=True)], device=device)
    pad = torch.tensor(pads, device=device) if any(pads) else None  # (P,)
    total = length + 1 + tokens
    llm.setup_cache(rows=len(rows), length=total)
    key_mask = torch.ones(len(rows), total, dtype=torch.bool, device=device)  # (P, S)
    for row in range(len(prompts), len(rows)):
        key_mask[row, pads[row] + 1 : length] = False  # an unconditional row sees only its BOS
    llm(
        llm.model.embed_tokens(distinct),
        torch.arange(length, device=device),
        key_mask=key_mask,
        used=length,
        pad=pad,
    )
    groups, j = (2 if unconds is not None else 1), len(prompts)
    # (groups*N,)
    index = torch.tensor([p + g * j for g in range(groups) for p in image_prompt], device=device)
    llm.expand_cache(index)
    positions = torch.arange(length, total, device=device)  # (1 + h*w,)
    return FlowPrompt(
        len(image_prompt), groups, length, positions, key_mask[index], None if pad is None else pad[index]
    )


@torch.inference_mode()
def velocity(model, fp: FlowPrompt, z: Tensor, t: Tensor) -> Tensor:
    """Velocities of every row for latents Z at times T, reusing the prefilled prefix.

    Args:
        z: (N, L, H, W) latents in the model dtype, shared by the cond and uncond rows.
        t: (N,) times on the 0..1000 scale, in the model dtype.
    Returns:
        (groups*N, L, H, W) velocities, `[cond x N; uncond x N]`.
    """
    tokens, t_emb, skip = model.encode_latent(z, t)  # (N, h*w, C), (N, C), (N, E, h, w)
    x = torch.cat([t_emb[:, None], tokens], dim=1)  # (N, 1 + h*w, C)
    g = fp.groups
    hidden = model.language_model(
        x.repeat(g, 1, 1), fp.positions, key_mask=fp.key_mask, used=fp.length + x.shape[1], pad=fp.pad
    )  # (groups*N, 1 + h*w, C)
    return model.decode_velocity(hidden[:, 1:], skip.repeat(g, 1, 1, 1), t_emb.repeat(g, 1))


@torch.inference_mode()
def recompute_velocity(model, prompt: list[int], uncond: list[int], z: Tensor, t: Tensor) -> Tensor:
    """The oracle: what the official demo computes, the whole sequence for all 2N rows at every
    call (no prefix cache). Same contract as `velocity`; used by tests and benchmarks."""
    n = z.shape[0]
    llm = model.language_model
    rows = torch.tensor([0] * n + [1] * n, device=z.device)
    # (2N, L', C)
    prefix = llm.model.embed_tokens(torch.tensor([prompt[:-1], uncond[:-1]], device=z.device))[rows]
    tokens, t_emb, skip = model.encode_latent(torch.cat([z, z]), torch.cat([t, t]))  # encoder on 2N rows
    x = torch.cat([prefix, t_emb[:, None], tokens], dim=1)  # (2N, L' + 1 + h*w, C)
    length, total = prefix.shape[1], x.shape[1]
    key_mask = torch.ones(2 * n, total, dtype=torch.bool, device=z.device)
    key_mask[n:, 1:length] = False
    llm.setup_cache(2 * n, total)
    hidden = llm(x, torch.arange(total, device=z.device), key_mask=key_mask, used=total)[
        :, -tokens.shape[1] :
    ]
    return model.decode_velocity(hidden, skip, t_emb)


@torch.inference_mode()
def sample_flow(
    model,
    prompts: list[list[int]],
    unconds: list[list[int]],
    image_prompt: list[int],
    z: Tensor,
    steps: int,
    cfg: float,
) -> Iterator[Tensor]:
    """Integrate noise Z to data in STEPS Euler steps; yield the (N, L, H, W) latent after each.

    Args:
        model: a JanusFlowModel. prompts/unconds: conditional and unconditional ids of J
            prompts (unconds[j] as long as prompts[j], ending with the generation tag, which is
            replaced by the time token). image_prompt: for each of the N images, its prompt.
        z: (N, L, H, W) noise at t = 0, in the model dtype.
        cfg: guidance weight w: `v = w·v_cond − (w−1)·v_uncond`; 1 runs no uncond rows.
    """
    n = z.shape[0]
    guided = cfg != 1.0
    tokens = (z.shape[2] // 2) * (z.shape[3] // 2)  # the encoder patchifies 2 x 2
    fp = prefill_prompt(model, prompts, unconds if guided else None, image_prompt, tokens)
    ts, dt = time_grid(steps, z.dtype, z.device)
    for k in range(steps):
        v = velocity(model, fp, z, ts[k].expand(n))  # (groups*N, L, H, W)
        if guided:
            v = apply_cfg(v[:n], v[n:], cfg)
        z = euler_step(z, v, dt)
        yield z
