"""`--max-batch` by default: what `--batch-size auto` picks (pipelines/memory.py) for a
typical prompt, the free memory shared between the served models."""

from __future__ import annotations

TYPICAL_PROMPT = 64  # tokens: a long image prompt; the cache is sized per image from it


def default_max_batch(session, models: int = 1) -> int:
    """Images per step for SESSION when MODELS models share the free memory."""
    from janus_cli.pipelines.memory import MOST, auto_batch_size, free_bytes, kv_bytes_per_image

    cfg = session.config
    per_image = kv_bytes_per_image(cfg.llm, TYPICAL_PROMPT + cfg.image_tokens + 1, session.dtype, guided=True)
    free = free_bytes(session.device)
    share = None if free is None else free // max(1, models)
    return auto_batch_size(per_image, share, session.device, MOST.get(session.device.type, 16))
