"""What quantizing costs in the distribution images are drawn from: teacher-forced per-step KL
of int8 and int4 against bf16 (sampling/fidelity.py), on full-size random weights and on a
variant with a few heavy input channels. Used by run.py and quant_quality.py.

Random weights give nearly flat logits, so these figures rank the schemes and catch a broken
kernel; they are not the quality on the real weights (quant_quality.py measures that for anyone
who has them).
"""

from __future__ import annotations

import copy

import torch
from workloads import janus_copy

from janus_cli.models.llama import RMSNorm
from janus_cli.prompts import make_uncond_ids
from janus_cli.sampling.fidelity import teacher_forced

SCHEMES = ("int8", "int4")
HEAVY_CHANNELS = 4  # per norm, each scaled by a factor drawn from HEAVY_RANGE
HEAVY_RANGE = (20.0, 100.0)


def with_heavy_channels(model, seed: int = 0):
    """A copy of MODEL sharing every tensor but the LLM's RMSNorm weights, in which a few
    channels are scaled x20-x100: the activations entering q/k/v and gate/up then carry the
    outlier channels real LLMs have (and int8 activation rows must span)."""
    own = {id(m.weight) for m in model.language_model.modules() if isinstance(m, RMSNorm)}
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in own}
    heavy = copy.deepcopy(model, memo=shared)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = HEAVY_RANGE
    for m in heavy.language_model.modules():
        if isinstance(m, RMSNorm):
            channels = torch.randperm(m.weight.numel(), generator=gen)[:HEAVY_CHANNELS]
            factors = lo + (hi - lo) * torch.rand(HEAVY_CHANNELS, generator=gen)
            with torch.no_grad():
                m.weight[channels] *= factors.to(m.weight.dtype)
    return heavy


def quality_rows(
    model, prompt: list[int], steps: int, n: int = 1, variants=("random", "heavy"), pad: int = 0
) -> list[dict]:
    """Rows of teacher-forced KL (CFG 5, temperature 1) for each scheme and weight variant, both
    sides prepared as `janus` runs them (our kernels, on the CPU); PAD fills the unconditional
    prompt."""
    rows = []
    uncond = make_uncond_ids(prompt, pad)
    for variant in variants:
        base = model if variant == "random" else with_heavy_channels(model)
        reference = janus_copy(base)
        for scheme in SCHEMES:
            out = teacher_forced(reference, janus_copy(base, scheme), prompt, uncond, n, 5.0, steps)
            g, c = out["guided"], out["conditional"]
            row = {
                "case": f"{scheme} vs bf16 KL, {variant} weights, {steps} steps",
                "quantize": scheme,
                "variant": variant,
                "steps": steps,
                **{f"guided_{k}": v for k, v in g.items()},
                **{f"conditional_{k}": v for k, v in c.items()},
            }
            print(
                f"{row['case']:<46} guided KL mean {g['kl_mean']:.2e} p99 {g['kl_p99']:.2e} "
                f"top-1 {g['top1']:.1%} | conditional KL mean {c['kl_mean']:.2e} p99 {c['kl_p99']:.2e} "
                f"top-1 {c['top1']:.1%}",
                flush=True,
            )
            rows.append(row)
        del reference, base
    return rows
