"""What the benchmarks run: full-size random-weight models of the published shapes, prepared as
`janus` runs them, the image-token loop, prompts, the bytes a step reads, and the timers."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from janus_cli.checkpoints.load import build_model, left_out
from janus_cli.checkpoints.strict import drop
from janus_cli.config import JanusConfig
from janus_cli.pipelines.session import prepare_model
from janus_cli.prompts import make_uncond_ids
from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.logits import make_sampler

ROOT = Path(__file__).parents[1]
IMAGE_TOKENS = 576


def random_model(name: str, dtype: torch.dtype, parts: tuple[str, ...] | None = None, device: str = "cpu"):
    """The published model NAME with random weights on DEVICE; only the LLM and PARTS'
    submodules (when None, all but the training-only ones), as checkpoints/load.py leaves the
    others out."""
    cfg = JanusConfig.from_file(ROOT / "weights" / "published" / name / "config.json")
    model = build_model(cfg)
    for path in left_out(model, parts):
        drop(model, path)
    model = model.to(dtype).to_empty(device=device)  # cast on meta: no fp32 copy in RAM
    gen = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def janus_copy(model, quantize: str = "none", compile: bool = False):
    """MODEL prepared the way `janus` runs it on MODEL's device (int8 if asked, then on the CPU
    oneDNN-blocked linears unless COMPILE), sharing with MODEL every tensor that preparing does
    not replace."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    weight = next(model.parameters())
    return prepare_model(copy.deepcopy(model, memo=shared), weight.device, weight.dtype, quantize, compile)


def decode_path_bytes(model) -> int:
    """Weights read once per image-token step: the LLM blocks and norm, gen_head, gen_aligner."""
    parts = [
        model.language_model.model.layers,
        model.language_model.model.norm,
        model.gen_head,
        model.gen_aligner,
    ]
    return sum(t.numel() * t.element_size() for m in parts for t in [*m.parameters(), *m.buffers()])


def kv_bytes(model, rows: int, positions: int) -> int:
    c = model.cfg.llm
    return (
        2
        * c.num_layers
        * c.num_kv_heads
        * c.head_dim
        * rows
        * positions
        * next(model.parameters()).element_size()
    )


def prompt_of(length: int) -> list[int]:
    return [100000] + list(range(1000, 1000 + length - 2)) + [100003]


def janus_codes(
    model, ids: list[int], n: int, steps: int, compile: bool = False, seed: int = 0, pad: int = 0
) -> Iterator[Tensor]:
    """N images of prompt IDS (CFG 5, temperature 1; image k draws from seed SEED + k)."""
    sampler = make_sampler(1.0, generators=[torch.Generator().manual_seed(seed + k) for k in range(n)])
    return generate_image_tokens(
        model, [ids], [make_uncond_ids(ids, pad)], [0] * n, 5.0, sampler, steps, compile
    )


def step_times(codes: Iterator[Tensor]) -> list[float]:
    return step_times_from(codes, time.perf_counter())[1:]  # step 0 includes the prefill


def step_times_from(items: Iterator[Tensor], t: float) -> list[float]:
    """Seconds from T to the first item, then between items."""
    out = []
    for _ in items:
        now = time.perf_counter()
        out.append(now - t)
        t = now
    return out


def timed_pair(ours, theirs, reps: int) -> tuple[float, float]:
    """Medians of REPS interleaved calls of two functions, after one warm-up each."""
    ours(), theirs()
    a, b = [], []
    for _ in range(reps):
        for f, out in ((ours, a), (theirs, b)):
            start = time.perf_counter()
            f()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)
