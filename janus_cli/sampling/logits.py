"""Pure functions on logits (B, V): guidance, filtering, choosing the next token."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Sampler = Callable[[Tensor], Tensor]  # (B, V) logits -> (B,) ids


def apply_cfg(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance on logits (B, V) or velocities (B, C, h, w).

    `uncond + scale * (cond - uncond)`; JanusFlow's `w*v_c - (w-1)*v_u` is the same formula.
    """
    return uncond + scale * (cond - uncond)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the K largest logits per row (ties at the K-th value kept), -inf elsewhere."""
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability mass reaches P (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def make_sampler(
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    generators: Sequence[torch.Generator] = (),
) -> Sampler:
    """A sampler for rows that each draw from their own generator (row i uses generators[i]).

    Temperature 0 means argmax (greedy); generators are then unused.
    """
    if temperature == 0:
        return lambda logits: logits.argmax(dim=-1)

    def sample(logits: Tensor) -> Tensor:
        logits = logits.float() / temperature
        if top_k:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        probs = logits.softmax(dim=-1).cpu()  # CPU draws: the same ids on every device
        rows = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)]
        return torch.cat(rows).to(logits.device)

    return sample
