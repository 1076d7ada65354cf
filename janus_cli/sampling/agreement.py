"""How closely a candidate model (e.g. int8-quantized) follows a reference in image-token decoding.

Both models decode the same prompt greedily; the candidate is fed the reference's codes
(teacher forcing), so one early disagreement does not make every later step differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from janus_cli.sampling.autoregressive import generate_image_tokens


@dataclass(frozen=True)
class Agreement:
    tokens: float  # fraction of (step, image) pairs where both models' greedy codes agree
    max_logit_error: float  # max |candidate - reference| over all guided logits
    logit_scale: float  # max |reference logit|, to read the error against


def greedy_agreement(
    reference, candidate, prompt: list[int], uncond: list[int], n: int, cfg: float, steps: int
) -> Agreement:
    """Decode STEPS image tokens for N images with both models (CFG scale CFG) and compare."""
    ref_codes: list[Tensor] = []
    ref_logits: list[Tensor] = []

    def record(logits: Tensor) -> Tensor:
        ref_logits.append(logits)
        ref_codes.append(logits.argmax(-1))
        return ref_codes[-1]

    for _ in generate_image_tokens(reference, [prompt], [uncond], [0] * n, cfg, record, steps):
        pass
    codes: list[Tensor] = []
    logits: list[Tensor] = []

    def forced(step_logits: Tensor) -> Tensor:
        logits.append(step_logits)
        codes.append(step_logits.argmax(-1))
        return ref_codes[len(codes) - 1]

    for _ in generate_image_tokens(candidate, [prompt], [uncond], [0] * n, cfg, forced, steps):
        pass
    a, b = torch.stack(logits).float(), torch.stack(ref_logits).float()  # (steps, N, V_img)
    same = (torch.stack(codes) == torch.stack(ref_codes)).float().mean().item()
    return Agreement(same, (a - b).abs().max().item(), b.abs().max().item())
