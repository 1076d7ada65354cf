"""How closely a candidate model (quantized, or on other kernels) follows a reference in
image-token decoding, measured as what it changes in the distribution images are drawn from.

Janus samples (temperature 1, no top-k), so free-running greedy agreement says little: one
changed token changes every later step. Instead the reference samples a sequence, the
candidate is fed the very same codes (teacher forcing), and each step compares the two
distributions over the 16384 codes: KL(reference || candidate) and whether their most likely
codes agree, on the guided logits (what is sampled; CFG 5 multiplies a logit error about 6x)
and on the raw conditional logits (the error before that amplification).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.logits import make_sampler


def kl_divergence(reference: Tensor, candidate: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(P || Q) in nats for each row of logits (..., V), P = softmax(REFERENCE / T) and
    Q = softmax(CANDIDATE / T), computed in float64 (-> (...,))."""
    p = torch.log_softmax(reference.double() / temperature, dim=-1)
    q = torch.log_softmax(candidate.double() / temperature, dim=-1)
    return (p.exp() * (p - q)).sum(-1).clamp(min=0)  # clamp: rounding below 0 for equal rows


def compare(reference: Tensor, candidate: Tensor, temperature: float = 1.0) -> dict[str, float]:
    """Mean and 99th percentile of the per-row KL, and the top-1 agreement, of logits (..., V)."""
    kl = kl_divergence(reference, candidate, temperature).flatten()
    same = (reference.argmax(-1) == candidate.argmax(-1)).double().mean()
    return {"kl_mean": kl.mean().item(), "kl_p99": torch.quantile(kl, 0.99).item(), "top1": same.item()}


@contextlib.contextmanager
def captured_logits(model) -> Iterator[list[Tensor]]:
    """The raw image logits (rows, V) of each of MODEL's `image_logits` calls inside the block."""
    calls: list[Tensor] = []
    image_logits = model.image_logits

    def capture(hidden: Tensor) -> Tensor:
        calls.append(image_logits(hidden).float())
        return calls[-1]

    model.image_logits = capture
    try:
        yield calls
    finally:
        del model.image_logits  # the class's method again


@torch.inference_mode()
def teacher_forced(
    reference,
    candidate,
    prompt: list[int],
    uncond: list[int],
    n: int,
    cfg: float,
    steps: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """REFERENCE samples STEPS codes for N images of PROMPT (CFG scale CFG, TEMPERATURE, image i
    drawing from seed SEED + i); CANDIDATE is fed the same codes. Returns compare()'s figures
    for the guided logits ("guided") and the conditional rows' raw logits ("conditional")."""
    runs = {}
    codes: list[Tensor] = []
    for name, model in (("reference", reference), ("candidate", candidate)):
        guided: list[Tensor] = []
        draw = make_sampler(
            temperature, generators=[torch.Generator().manual_seed(seed + i) for i in range(n)]
        )

        def choose(
            logits: Tensor, guided=guided, draw=draw, codes=codes, forced=name == "candidate"
        ) -> Tensor:
            guided.append(logits.float())  # (N, V)
            return codes[len(guided) - 1] if forced else draw(logits)

        with captured_logits(model) as raw:
            out = list(generate_image_tokens(model, [prompt], [uncond], [0] * n, cfg, choose, steps))
        if not codes:  # the reference's draws, fed to the candidate
            codes.extend(out)
        conditional = torch.stack(raw)[:, :n]  # (steps, N, V): the first N rows are conditional
        runs[name] = (torch.stack(guided), conditional)
    (g_ref, c_ref), (g_cand, c_cand) = runs["reference"], runs["candidate"]
    return {
        "guided": compare(g_ref, g_cand, temperature),
        "conditional": compare(c_ref, c_cand, temperature),
    }
