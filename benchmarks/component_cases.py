"""The other timed cases: describe's prefill and text tokens, the VQ and SDXL-VAE decoders, and
JanusFlow's cached-prefix step, each against its peer on the same weights."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Iterator

import torch
from peers import peer_model, peer_text, vae_peer, vq_peer
from workloads import IMAGE_TOKENS, ROOT, janus_copy, prompt_of, step_times_from, timed_pair

from janus_cli.sampling.flow import prefill_prompt, recompute_velocity, time_grid, velocity
from janus_cli.sampling.text import generate_text


def understanding_case(model, prompt_length: int, tokens: int, reps: int) -> dict:
    """describe's LLM part: prefill PROMPT_LENGTH embeddings (one image's 576 features and a
    question), then TOKENS greedy text tokens, each reading every block and the 0.4 GB lm_head.
    SigLIP is the same code on both sides and is not timed."""
    janus, peer = janus_copy(model), peer_model(model)
    embeds = torch.randn(
        1, prompt_length, model.cfg.llm.hidden_size, generator=torch.Generator().manual_seed(0)
    )
    embeds = (embeds * 0.02).to(next(model.parameters()).dtype)
    greedy = lambda logits: logits.argmax(-1)  # noqa: E731
    prefill, token = {"janus": [], "peer": []}, {"janus": [], "peer": []}
    for _ in range(reps):  # interleaved
        for who, ids in (
            ("janus", generate_text(janus.language_model, embeds, tokens, greedy, eos=-1)),
            ("peer", peer_text(peer, embeds, tokens)),
        ):
            start = time.perf_counter()
            times = step_times_from(ids, start)
            prefill[who].append(times[0])
            token[who] += times[1:]
    a, b = statistics.median(prefill["janus"]), statistics.median(prefill["peer"])
    ta, tb = statistics.median(token["janus"]), statistics.median(token["peer"])
    dt = str(embeds.dtype).removeprefix("torch.")
    rows = [
        {
            "case": f"describe prefill Janus-Pro-1B {dt} {prompt_length} tokens",
            "janus_ms": a * 1e3,
            "peer_ms": b * 1e3,
            "speedup": b / a,
        },
        {
            "case": f"describe text token Janus-Pro-1B {dt}",
            "janus_ms": ta * 1e3,
            "peer_ms": tb * 1e3,
            "speedup": tb / ta,
            "janus_tokens_per_s": 1 / ta,
            "peer_tokens_per_s": 1 / tb,
        },
    ]
    for r in rows:
        print(
            f"{r['case']:<46} janus {r['janus_ms']:7.1f} ms  peer {r['peer_ms']:7.1f} ms  "
            f"speed-up x{r['speedup']:.2f}",
            flush=True,
        )
    print(f"text tokens/s: janus {1 / ta:.1f}, peer {1 / tb:.1f}", flush=True)
    return rows


def decoder_row(case: str, a: float, b: float) -> dict:
    row = {"case": case, "janus_ms": a * 1e3, "peer_ms": b * 1e3, "speedup": b / a}
    print(f"{case:<46} janus {a * 1e3:7.1f} ms  peer {b * 1e3:7.1f} ms  speed-up x{b / a:.2f}", flush=True)
    return row


@torch.inference_mode()
def vq_decode_case(model, reps: int) -> dict:
    """One image's 576 codes through VQ-16: ours against transformers' `JanusVQVAE`."""
    peer = vq_peer(model)
    codes = torch.randint(0, 16384, (1, IMAGE_TOKENS), generator=torch.Generator().manual_seed(0))
    diff = (model.decode_codes(codes).float() - peer.decode(codes).float()).abs().max().item()
    a, b = timed_pair(lambda: model.decode_codes(codes), lambda: peer.decode(codes), reps)
    row = decoder_row(f"VQ decode 1 image {str(model.gen_embed.weight.dtype).removeprefix('torch.')}", a, b)
    return {**row, "max_abs_diff": diff}


@torch.inference_mode()
def vae_decode_case(dtype: torch.dtype, reps: int) -> dict | None:
    """One 48x48 latent through the SDXL-VAE decoder: ours against diffusers' AutoencoderKL on
    the same weights (identical names); skipped without diffusers."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print("skipped VAE decode: no diffusers (pip install -e '.[bench]')", flush=True)
        return None
    from janus_cli.checkpoints.vae import vae_config
    from janus_cli.models.vae import VAEDecoder

    config = json.loads((ROOT / "weights" / "published" / "sdxl-vae" / "config.json").read_text())
    ours = VAEDecoder(vae_config(config)).to(dtype).eval()
    gen = torch.Generator().manual_seed(0)
    for p in ours.parameters():
        p.normal_(0, 0.02, generator=gen)
    peer = vae_peer(ours, config)
    z = torch.randn(1, 4, 48, 48, generator=gen).to(dtype)
    scale = config["scaling_factor"]
    diff = (ours.decode(z).float() - peer.decode(z / scale).sample.float()).abs().max().item()
    a, b = timed_pair(lambda: ours.decode(z), lambda: peer.decode(z / scale).sample, reps)
    return {
        **decoder_row(f"SDXL-VAE decode 1 image {str(dtype).removeprefix('torch.')}", a, b),
        "max_abs_diff": diff,
    }


def flow_step_case(model, prompt_length: int, reps: int) -> dict:
    """One JanusFlow velocity evaluation (B = 1 image, CFG rows) on the real shape: the prompt
    prefix cached once vs the official full recompute every step. The step is compute-bound, so
    the prompt length predicts the LLM part's ratio (llm_flops; about (L' + 577) / 577 for a
    prompt of L' + 1 tokens, a little less because the 577 tokens still attend to the prefix),
    and the step's once the latent encoder and decoder, which both loops run, are added to both
    sides: a few percent for the usual short prompts (L' ~ 36), more for long ones."""
    dtype = next(model.parameters()).dtype
    ids = prompt_of(prompt_length)
    uncond = [ids[0]] + [100015] * (len(ids) - 1)
    z = torch.randn(1, 4, 48, 48, generator=torch.Generator().manual_seed(0)).to(dtype)
    t = time_grid(30, dtype)[0][:1]
    llm = model.language_model
    cached, full, llm_cached, llm_full = [], [], [], []
    for _ in range(reps):  # interleaved; the prefix prefill (once per image) is not timed
        fp = prefill_prompt(model, [ids], [uncond], [0], 576)
        with timed_forward(llm) as llm_time:
            start = time.perf_counter()
            velocity(model, fp, z, t)
            cached.append(time.perf_counter() - start)
        llm_cached.append(sum(llm_time))
        with timed_forward(llm) as llm_time:
            start = time.perf_counter()
            recompute_velocity(model, ids, uncond, z, t)
            full.append(time.perf_counter() - start)
        llm_full.append(sum(llm_time))
    a, b = statistics.median(cached), statistics.median(full)
    llm_ratio = statistics.median(llm_full) / statistics.median(llm_cached)
    prefix = len(ids) - 1  # L': the prompt minus its generation tag
    predicted_llm = llm_flops(model.cfg, 0, prefix + 577) / llm_flops(model.cfg, prefix, 577)
    rest = b - statistics.median(llm_full)  # the latent encoder, decoder and CFG, alike in both loops
    predicted = b / (rest + statistics.median(llm_full) / predicted_llm)
    row = {
        "case": f"JanusFlow step {str(dtype).removeprefix('torch.')} B=1 prompt {len(ids)}",
        "janus_ms": a * 1e3,
        "peer_ms": b * 1e3,
        "speedup": b / a,
        "predicted": predicted,
        "llm_speedup": llm_ratio,
        "llm_predicted": predicted_llm,
    }
    print(
        f"{row['case']:<46} janus {a * 1e3:7.1f} ms  peer {b * 1e3:7.1f} ms  speed-up x{b / a:.2f} "
        f"(the prompt length predicts x{predicted:.2f}); "
        f"of the LLM part x{llm_ratio:.2f} (predicted x{predicted_llm:.3f})",
        flush=True,
    )
    return row


def llm_flops(cfg, prefix: int, tokens: int) -> float:
    """FLOPs of the LLM's blocks running TOKENS new tokens after PREFIX cached ones under the
    causal mask: 2 per weight per token in the linears, and 4 per head dim per visible (query,
    key) pair in q.k and p.v."""
    c = cfg.llm
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    weights = c.hidden_size * (2 * q + 2 * kv) + 3 * c.hidden_size * c.intermediate_size  # per layer
    pairs = tokens * prefix + tokens * (tokens + 1) / 2
    return c.num_layers * (2 * weights * tokens + 4 * q * pairs)


@contextlib.contextmanager
def timed_forward(module) -> Iterator[list[float]]:
    """The durations of MODULE's forward calls inside the block (the non-LLM parts of a flow
    step, the same in both loops, dilute the ratio the prompt length predicts)."""
    durations: list[float] = []
    forward = module.forward

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        durations.append(time.perf_counter() - start)
        return out

    module.forward = timed
    try:
        yield durations
    finally:
        del module.forward  # the class's forward again
