"""Speed of janus-cli against the official algorithm, measured side by side in one run.

    python benchmarks/run.py [--quick] [--threads N]

Builds full-size random-weight models of the published shapes (Janus-Pro-1B from its real
config.json) and times, interleaved and repeated, the image-token decode step of janus-cli
(static KV cache, prompt prefilled once and shared) against the official loop: transformers'
`LlamaForCausalLM` with its growing `DynamicCache`, `gen_head`, logit CFG, sampling and
`gen_embed` + `gen_aligner` (needs `pip install -e ".[bench]"`). Both use the very same weight
tensors. Prints medians, the janus/peer ratio and the fraction of the memory-bandwidth roofline;
writes benchmarks/results/<date>.json. Wall-clock numbers are noisy on shared machines: read
the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from janus_cli.checkpoints.load import build_model
from janus_cli.config import JanusConfig
from janus_cli.prompts import make_uncond_ids
from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.flow import prefill_prompt, recompute_velocity, time_grid, velocity
from janus_cli.sampling.logits import apply_cfg, make_sampler

ROOT = Path(__file__).parents[1]


def bandwidth_gbs(dtype: torch.dtype) -> float:
    x = torch.ones(2**30 // torch.tensor([], dtype=dtype).element_size(), dtype=dtype)
    x.sum()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t)
    return 2**30 / min(times) / 1e9


def random_model(name: str, dtype: torch.dtype):
    cfg = JanusConfig.from_file(ROOT / "weights" / "published" / name / "config.json")
    model = build_model(cfg).to_empty(device="cpu").to(dtype)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def decode_path_bytes(model) -> int:
    """Weights read once per image-token step: the LLM blocks and norm, gen_head, gen_aligner."""
    parts = [model.language_model.model.layers, model.language_model.model.norm, model.gen_head, model.gen_aligner]
    return sum(p.numel() * p.element_size() for m in parts for p in m.parameters())


def janus_steps(model, ids: list[int], n: int, steps: int) -> list[float]:
    sampler = make_sampler(1.0, generators=[torch.Generator().manual_seed(k) for k in range(n)])
    out, t = [], time.perf_counter()
    for _ in generate_image_tokens(model, [ids], [make_uncond_ids(ids, 0)], [0] * n, 5.0, sampler, steps):
        now = time.perf_counter()
        out.append(now - t)
        t = now
    return out[1:]  # step 0 includes the prefill


def peer_model(model):
    """transformers' LlamaForCausalLM sharing our weight tensors (names are identical)."""
    from transformers import LlamaConfig as HFConfig, LlamaForCausalLM

    c = model.cfg.llm
    hf_cfg = HFConfig(hidden_size=c.hidden_size, intermediate_size=c.intermediate_size, num_hidden_layers=c.num_layers,
                      num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads, vocab_size=c.vocab_size,
                      rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings)  # fmt: skip
    with torch.device("meta"):
        peer = LlamaForCausalLM(hf_cfg)
    peer.load_state_dict(model.language_model.state_dict(), assign=True, strict=False)
    peer.model.rotary_emb = type(peer.model.rotary_emb)(hf_cfg)  # its inv_freq buffer was on meta
    return peer.eval()


@torch.inference_mode()
def peer_steps(model, peer, ids: list[int], n: int, steps: int) -> list[float]:
    """The official generation loop (generation_inference.py): interleaved rows, growing cache."""
    from transformers import DynamicCache

    rows = torch.tensor([ids, make_uncond_ids(ids, 0)] * n)  # (2N, L) cond/uncond interleaved
    embeds = peer.model.embed_tokens(rows)
    cache = DynamicCache()
    gen = torch.Generator().manual_seed(0)
    out, t = [], time.perf_counter()
    for _ in range(steps):
        hidden = peer.model(inputs_embeds=embeds, use_cache=True, past_key_values=cache).last_hidden_state
        logits = model.gen_head(hidden[:, -1])
        guided = apply_cfg(logits[0::2], logits[1::2], 5.0)
        codes = torch.multinomial(guided.float().softmax(-1), 1, generator=gen)  # (N, 1)
        embeds = model.gen_aligner(model.gen_embed(codes.repeat_interleave(2, dim=0)))  # (2N, 1, C)
        now = time.perf_counter()
        out.append(now - t)
        t = now
    return out[1:]


def flow_step_case(dtype: torch.dtype, reps: int) -> dict:
    """One JanusFlow velocity evaluation (B = 1 image, CFG rows) on the real shape: the prompt
    prefix cached once vs the official full recompute every step. The LLM work shrinks by
    (L' + 577) / 577 and the encoder runs on N rows instead of 2N, so with the usual short
    prompts (L' ~ 36) expect a few percent; the gain grows with the prompt."""
    model = random_model("JanusFlow-1.3B", dtype)
    ids = [100000] + list(range(1000, 1035)) + [100003]  # 37 tokens like the golden prompt
    uncond = [ids[0]] + [100015] * (len(ids) - 1)
    z = torch.randn(1, 4, 48, 48, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = time_grid(30, dtype)[0][:1]
    cached, full = [], []
    for _ in range(reps):  # interleaved; the prefix prefill (once per image) is not timed
        fp = prefill_prompt(model, [ids], [uncond], [0], 576)
        start = time.perf_counter()
        velocity(model, fp, z, t)
        cached.append(time.perf_counter() - start)
        start = time.perf_counter()
        recompute_velocity(model, ids, uncond, z, t)
        full.append(time.perf_counter() - start)
    a, b = statistics.median(cached), statistics.median(full)
    return {"case": f"JanusFlow step {str(dtype).removeprefix('torch.')} B=1 ctx {len(ids) + 576}",
            "janus_ms": a * 1e3, "peer_ms": b * 1e3, "speedup": b / a}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and cases")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, reps = (12, 2) if args.quick else (32, 3)
    cases = [(torch.bfloat16, 1), (torch.bfloat16, 4)] + ([] if args.quick else [(torch.float32, 1)])
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "threads": torch.get_num_threads(), "torch": torch.__version__},
              "read_bandwidth_gbs": {"float32": bandwidth_gbs(torch.float32), "bfloat16": bandwidth_gbs(torch.bfloat16)},
              "cases": []}  # fmt: skip
    print(f"read bandwidth: fp32 {result['read_bandwidth_gbs']['float32']:.1f} GB/s, bf16 {result['read_bandwidth_gbs']['bfloat16']:.1f} GB/s")
    contexts = [40] if args.quick else [40, 600]  # the cost of a growing cache shows at long contexts
    for dtype in dict.fromkeys(d for d, _ in cases):
        model = random_model("Janus-Pro-1B", dtype)
        peer = peer_model(model)
        weight_bytes = decode_path_bytes(model)
        for (_, n), context in [(c, ctx) for c in cases if c[0] == dtype for ctx in contexts]:
            ids = [100000] + list(range(1000, 1000 + context - 2)) + [100003]
            ours, theirs = [], []
            for _ in range(reps):  # interleave, so load changes hit both alike
                ours += janus_steps(model, ids, n, steps)
                theirs += peer_steps(model, peer, ids, n, steps)
            a, b = statistics.median(ours), statistics.median(theirs)
            dt = str(dtype).removeprefix("torch.")
            roofline = weight_bytes / (result["read_bandwidth_gbs"][dt] * 1e9) / a
            row = {"case": f"decode step Janus-Pro-1B {dt} N={n} ctx {context}", "janus_ms": a * 1e3, "peer_ms": b * 1e3,
                   "speedup": b / a, "roofline_fraction": roofline}  # fmt: skip
            result["cases"].append(row)
            print(f"{row['case']:<48} janus {a * 1e3:7.1f} ms  peer {b * 1e3:7.1f} ms  "
                  f"speed-up x{b / a:.2f}  roofline {roofline:.0%}")  # fmt: skip
        del model, peer
    row = flow_step_case(torch.bfloat16, 2 if args.quick else 3)
    result["cases"].append(row)
    print(f"{row['case']:<48} janus {row['janus_ms']:7.1f} ms  peer {row['peer_ms']:7.1f} ms  speed-up x{row['speedup']:.2f} "
          f"(prompt-length bound x{613 / 577:.2f})")  # fmt: skip
    out = ROOT / "benchmarks" / "results" / f"{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
