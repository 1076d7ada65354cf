"""The training forward: whole sequences through the LLM at once, no KV cache, blocks optionally
under gradient checkpointing. It runs the model's own modules (Block.forward, the same RoPE
tables and norms inference uses), so what trains is what runs.

Legend: B rows, T tokens, C hidden, V text vocabulary, V_img codebook size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class NoCache(nn.Module):
    """Stands in for a layer's KVCache: a whole sequence attends to itself, nothing is kept."""

    def update(self, pos: Tensor, k: Tensor, v: Tensor, used: int | None) -> tuple[Tensor, Tensor]:
        return k, v


def hidden_states(llm: nn.Module, embeds: Tensor, checkpointing: bool) -> Tensor:
    """(B, T, C) input embeddings -> (B, T, C) final-normed hidden states, causal attention.

    Rows are right-padded: under a causal mask padding at the end changes no earlier position.
    """
    t = embeds.shape[1]
    if llm.rope_cos is None or llm.cache_length < t:
        llm.setup_cache(rows=0, length=t)  # the RoPE and mask tables; zero cache rows
    for layer in llm.model.layers:
        layer.self_attn.cache = NoCache()  # inference (the sample grid) puts real caches back
    pos = torch.arange(t, device=embeds.device)
    cos = llm.rope_cos[:t].to(embeds.dtype)[None, None]  # (1, 1, T, D)
    sin = llm.rope_sin[:t].to(embeds.dtype)[None, None]
    mask = llm.causal[:t, :t][None, None]  # (1, 1, T, T)
    x = embeds
    for layer in llm.model.layers:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(layer, x, cos, sin, pos, mask, t, use_reentrant=False)
        else:
            x = layer(x, cos, sin, pos, mask, t)
    return llm.model.norm(x)


def image_logits(model: nn.Module, prompts: list[Tensor], codes: Tensor, checkpointing: bool) -> Tensor:
    """Teacher-forced text-to-image logits, at the image positions only.

    Args:
        prompts: B prompt id tensors (P_b,), each ending at `<begin_of_image>`.
        codes: (B, N) image codes; all but the last are fed (gen_embed -> gen_aligner).
    Returns:
        (B, N, V_img) fp32 logits: [:, k] predicts codes[:, k] (the first from `<begin_of_image>`).
    """
    n = codes.shape[1]
    image = model.code_embeds(codes[:, :-1])  # (B, N - 1, C)
    embed = model.language_model.model.embed_tokens
    rows = [
        torch.cat([embed(p), image[b].to(image.dtype)]) for b, p in enumerate(prompts)
    ]  # (P_b + N - 1, C)
    embeds = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, T, C), right-padded with zeros
    hidden = hidden_states(model.language_model, embeds, checkpointing)
    at = torch.stack([torch.arange(n) + len(p) - 1 for p in prompts]).to(embeds.device)  # (B, N) positions
    picked = hidden.gather(1, at[..., None].expand(-1, -1, hidden.shape[-1]))  # (B, N, C)
    return model.gen_head(picked).float()


def text_logits(
    model: nn.Module, ids: Tensor, slots: Tensor, features: Tensor | None, where: Tensor, checkpointing: bool
) -> Tensor:
    """Teacher-forced understanding logits, at the positions WHERE only (the answer's).

    Args:
        ids: (B, T) conversation ids. slots: (B, T) bool, `model.image_slots(ids, special)`.
        features: (n, slots, C) the features of those slots in reading order (from
            `model.image_features`, computed once per image: the tower is frozen).
        where: (B, T) bool, the M positions to score (the text head is wide: 100k classes).
    Returns:
        (M, V) fp32 logits; position t predicts ids[:, t + 1].
    """
    embeds = model.language_model.model.embed_tokens(ids)  # (B, T, C)
    if features is not None:
        embeds[slots] = features.flatten(0, 1).to(embeds.dtype)  # (n * slots, C), as embed_with_images
    hidden = hidden_states(model.language_model, embeds, checkpointing)
    return model.language_model.logits(hidden[where])  # (M, V)
