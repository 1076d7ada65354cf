"""What int8 and int4 weights cost in image generation, against bf16 on the same weights.

    python benchmarks/quant_quality.py --model janus-pro-7b         # real weights (a folder, alias or hub id)
    python benchmarks/quant_quality.py --model random:Janus-Pro-1B  # full-size random weights

Prints, per scheme, the teacher-forced per-step KL divergence of the guided distribution (CFG 5,
temperature 1, over the 16384 codes) and of the raw conditional logits against bf16 (mean, p99,
top-1 agreement; sampling/fidelity.py), averaged over the prompts; for random weights also on a
variant with a few heavy input channels (quality.py). Then writes one grid PNG: a row per
prompt, columns bf16 | int8 | int4, every image drawn with the same seed. Random weights draw
noise: the grid shows the plumbing, the KL the schemes' ranking; image quality needs the real
weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the sibling modules, also when loaded by path (tests)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from quality import SCHEMES, quality_rows  # noqa: E402
from workloads import IMAGE_TOKENS, ROOT, janus_codes, janus_copy, prompt_of, random_model  # noqa: E402

PROMPTS = [
    "A close-up photo of a red fox in fresh snow, soft morning light",
    "A watercolor painting of a lighthouse on a rocky coast at sunset",
    "A bowl of ramen with a soft-boiled egg, top view, studio lighting",
]


def load(ref: str):
    """(model loaded for generation in bf16, tokenizer or None) for REF: `random:NAME` (a folder
    of weights/published) or a checkpoint folder, alias or hub id."""
    if ref.startswith("random:"):
        return random_model(ref.removeprefix("random:"), torch.bfloat16, ("generation",)), None
    from janus_cli.checkpoints.hub import resolve
    from janus_cli.checkpoints.load import load_model
    from janus_cli.tokenizer import Tokenizer

    folder = resolve(ref, None)
    model = load_model(folder, torch.bfloat16, "cpu", ("generation",))
    return model, Tokenizer(folder)


def prompt_tokens(tok, prompts: list[str]) -> list[list[int]]:
    if tok is None:  # random weights: any ids of the right length
        return [prompt_of(40 + 3 * i) for i in range(len(prompts))]
    from janus_cli.prompts import generation_ids

    return [generation_ids(tok, p) for p in prompts]


def grid(model, ids: list[list[int]], seed: int, steps: int, pad: int) -> np.ndarray:
    """(rows * 384, 3 * 384, 3) uint8: a row per prompt, columns bf16 | int8 | int4."""
    from janus_cli.imageio import to_uint8

    rows = []
    for scheme in ("none", *SCHEMES):
        m = janus_copy(model, scheme)
        images = []
        for prompt in ids:
            codes = torch.stack(
                list(janus_codes(m, prompt, 1, steps, seed=seed, pad=pad)), dim=1
            )  # (1, steps)
            codes = codes.repeat(1, -(-IMAGE_TOKENS // steps))[:, :IMAGE_TOKENS]  # (1, 576)
            images.append(to_uint8(model.decode_codes(codes))[0])  # (384, 384, 3)
        rows.append(np.concatenate(images, axis=0))  # (P * 384, 384, 3)
        del m
    return np.concatenate(rows, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random:Janus-Pro-1B", help="folder, alias, hub id, or random:NAME")
    ap.add_argument("--prompts", type=int, default=2, help=f"how many of the {len(PROMPTS)} built-in prompts")
    ap.add_argument(
        "--steps", type=int, default=IMAGE_TOKENS, help="image tokens per image (576: whole images)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quant-grid.png")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load(args.model)
    ids = prompt_tokens(tok, PROMPTS[: args.prompts])
    variants = ("random", "heavy") if args.model.startswith("random:") else ("random",)
    pad = 0 if tok is None else tok.special.pad
    rows = [r for prompt in ids for r in quality_rows(model, prompt, args.steps, variants=variants, pad=pad)]
    summary = {}
    for r in rows:  # the mean over prompts
        key = (r["quantize"], r["variant"])
        for k, v in r.items():
            if k.startswith(("guided_", "conditional_")):
                summary.setdefault(key, {}).setdefault(k, []).append(v)
    print(f"\n{args.model}: teacher-forced KL against bf16 over {args.steps} steps, {len(ids)} prompts")
    print(
        "| scheme | weights | guided KL mean | guided KL p99 | guided top-1 | cond. KL mean | cond. top-1 |"
    )
    print("|---|---|---|---|---|---|---|")
    doc = []
    for (scheme, variant), figures in summary.items():
        f = {k: float(np.mean(v)) for k, v in figures.items()}
        doc.append({"quantize": scheme, "variant": variant, **f})
        print(
            f"| {scheme} | {variant} | {f['guided_kl_mean']:.2e} | {f['guided_kl_p99']:.2e} | "
            f"{f['guided_top1']:.1%} | {f['conditional_kl_mean']:.2e} | {f['conditional_top1']:.1%} |"
        )
    from PIL import Image

    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(model, ids, args.seed, args.steps, pad)).save(args.out)
    args.out.with_suffix(".json").write_text(
        json.dumps({"model": args.model, "steps": args.steps, "rows": doc})
    )
    print(
        f"wrote {args.out} (rows: prompts; columns: bf16 | int8 | int4) in {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
