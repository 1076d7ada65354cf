"""The objectives, as pure functions of logits and targets.

Legend: B rows, T positions, V classes (text vocabulary or VQ codebook).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

IGNORE = -100  # a target that takes no loss (prompt tokens, padding)


def token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of LOGITS (..., V) against TARGETS (...), skipping IGNORE.

    One rule for both tasks: generate's targets are the 576 codes at the positions from
    `<begin_of_image>` on; describe's are the answer's tokens and its EOS.
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE
    )


def shifted_targets(ids: Tensor, answer_from: list[int], lengths: list[int]) -> Tensor:
    """(B, T) next-token targets of conversations IDS: position t predicts ids[t + 1] where
    ids[t + 1] belongs to the answer (index >= answer_from[b] and < lengths[b]); IGNORE elsewhere."""
    targets = ids.new_full(ids.shape, IGNORE)
    for b, (start, end) in enumerate(zip(answer_from, lengths, strict=True)):
        targets[b, start - 1 : end - 1] = ids[b, start:end]
    return targets
