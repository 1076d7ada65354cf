"""Text decoding for understanding: prefill the prompt embeddings, then one token per step."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from janus_cli.sampling.logits import Sampler


@torch.inference_mode()
def generate_text(llm, embeds: Tensor, max_tokens: int, sampler: Sampler, eos: int) -> Iterator[Tensor]:
    """Yield the (B,) next token ids of every row until all rows have produced EOS.

    Args:
        llm: the Llama. embeds: (B, T, C) prompt embeddings (rows of equal length).
        max_tokens: most tokens per row; rows that finished keep yielding EOS.
    """
    b, t, _ = embeds.shape
    llm.setup_cache(rows=b, length=t + max_tokens)
    positions = torch.arange(t + max_tokens, device=embeds.device)
    hidden = llm(embeds, positions[:t], used=t)[:, -1]  # (B, C)
    done = torch.zeros(b, dtype=torch.bool, device=embeds.device)
    for step in range(max_tokens):
        ids = sampler(llm.logits(hidden)).masked_fill(done, eos)  # (B,)
        yield ids
        done |= ids == eos
        if bool(done.all()) or step + 1 == max_tokens:
            return
        end = t + step + 1
        hidden = llm(llm.model.embed_tokens(ids[:, None]), positions[end - 1 : end], used=end)[:, -1]
