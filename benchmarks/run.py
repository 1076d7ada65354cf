"""Speed and memory of janus-cli against the official algorithm, measured side by side in one run.

    python benchmarks/run.py [--quick] [--threads N]

Builds full-size random-weight models of the published shapes (Janus-Pro-1B and JanusFlow-1.3B
from their real config.json) and times, interleaved and repeated, the image-token decode step of
janus-cli (static KV cache, prompt prefilled once and shared; bf16, int8 weights, fp32) against
the official loop: transformers' `LlamaForCausalLM` with its growing `DynamicCache`, `gen_head`,
logit CFG, sampling and `gen_embed` + `gen_aligner` (needs `pip install -e ".[bench]"`). Both use
the very same weight tensors. Also: the int8 quality cost (greedy agreement, logit error), one
JanusFlow step, and the peak RSS of a `generate -n 4`-like run of each, in fresh processes.
Prints medians, janus/peer ratios and the fraction of the memory-bandwidth roofline, then one
`SUMMARY` line; writes benchmarks/results/<date>.json. Wall-clock numbers are noisy on shared
machines: read the ratios. The peers are built in peers.py, the machine's facts read in
machine.py.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# as `janus` runs (janus_cli/cli/__init__.py), for both sides
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch
from torch import Tensor

from janus_cli.checkpoints.load import build_model, left_out
from janus_cli.checkpoints.strict import drop
from janus_cli.config import JanusConfig
from janus_cli.pipelines.session import prepare_model
from janus_cli.prompts import make_uncond_ids
from janus_cli.sampling.agreement import greedy_agreement
from janus_cli.sampling.autoregressive import generate_image_tokens
from janus_cli.sampling.flow import prefill_prompt, recompute_velocity, time_grid, velocity
from janus_cli.sampling.logits import make_sampler
from janus_cli.sampling.text import generate_text

sys.path.insert(0, str(Path(__file__).parent))  # the sibling modules, also when loaded by path (tests)
from machine import GiB, available_bytes, bandwidth_gbs, idle_cores, machine, read_gbs  # noqa: E402
from peers import hf_janus_model, peer_codes, peer_model, peer_text, vae_peer, vq_peer  # noqa: E402

ROOT = Path(__file__).parents[1]
IMAGE_TOKENS = 576
FP32_BYTES = 15 * GiB  # what the fp32 decode case needs free (main)


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


def janus_codes(model, ids: list[int], n: int, steps: int, compile: bool = False) -> Iterator[Tensor]:
    sampler = make_sampler(1.0, generators=[torch.Generator().manual_seed(k) for k in range(n)])
    return generate_image_tokens(
        model, [ids], [make_uncond_ids(ids, 0)], [0] * n, 5.0, sampler, steps, compile
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


def decode_cases(
    model,
    dtype: torch.dtype,
    ns: list[int],
    int8_ns: list[int],
    contexts: list[int],
    steps: int,
    reps: int,
    compile: bool = False,
) -> list[dict]:
    """Per N and context: janus (and janus int8 for N in INT8_NS, and janus --compile if COMPILE)
    against the peer, interleaved. The read bandwidth is measured right before each janus run, and
    a run's roofline fraction is its floor at that bandwidth over its median step: on a shared
    machine the bandwidth swings 30-60 GB/s within minutes, so a figure from the start would
    misplace every later roofline. The row gives the median fraction and the median bandwidth."""
    peer = peer_model(model)
    janus = janus_copy(model)
    quantized = janus_copy(model, "int8") if int8_ns else None
    compiled = janus_copy(model, compile=True) if compile else None
    dt = str(dtype).removeprefix("torch.")
    probe = torch.ones(GiB // 4, dtype=torch.bfloat16)  # 512 MiB
    rows = []
    for n in ns:
        for context in contexts:
            # Our cache, the peer's and its `torch.cat` copy while it grows, and attention scratch
            # (N=16 at context 600 ran out of 24 GB beside the three model copies).
            need = 4 * kv_bytes(model, 2 * n, context + steps)
            if need > available_bytes() - 2 * GiB:
                print(
                    f"skipped N={n} ctx {context} ({dt}): the KV caches need {need / GiB:.1f} GiB, "
                    f"{available_bytes() / GiB:.1f} GiB available",
                    flush=True,
                )
                continue
            ids = prompt_of(context)
            runs = {
                "janus": janus,
                **({"int8": quantized} if n in int8_ns else {}),
                **({"compiled": compiled} if compile else {}),
            }
            if compile:  # compiling (minutes, once per shape) is not a step
                list(janus_codes(compiled, ids, n, 3, compile=True))
            times: dict[str, list[float]] = {k: [] for k in [*runs, "peer"]}
            fractions: dict[str, list[float]] = {k: [] for k in runs}
            bandwidths = []
            for _ in range(reps):  # interleave, so load changes hit all alike
                for name, m in runs.items():
                    bandwidths.append(read_gbs(probe, 2))  # paired with the run that follows
                    t = step_times(janus_codes(m, ids, n, steps, compile=name == "compiled"))
                    times[name] += t
                    fractions[name].append(
                        decode_path_bytes(m) / (bandwidths[-1] * 1e9) / statistics.median(t)
                    )
                times["peer"] += step_times(peer_codes(model, peer, ids, n, steps))
            b = statistics.median(times["peer"])
            bandwidth = statistics.median(bandwidths)
            for name, m in runs.items():
                a = statistics.median(times[name])
                floor = decode_path_bytes(m) / (bandwidth * 1e9)
                label = {"int8": f"{dt} int8", "compiled": f"{dt} --compile"}.get(name, dt)
                row = {
                    "case": f"decode step Janus-Pro-1B {label} N={n} ctx {context}",
                    "dtype": dt,
                    "int8": name == "int8",
                    "compiled": name == "compiled",
                    "n": n,
                    "context": context,
                    "janus_ms": a * 1e3,
                    "peer_ms": b * 1e3,
                    "speedup": b / a,
                    "floor_ms": floor * 1e3,
                    "bandwidth_gbs": bandwidth,
                    "roofline_fraction": statistics.median(fractions[name]),
                    "images_per_s": n / (IMAGE_TOKENS * a),
                }
                rows.append(row)
                print(
                    f"{row['case']:<46} janus {a * 1e3:7.1f} ms  peer {b * 1e3:7.1f} ms  "
                    f"speed-up x{b / a:.2f}  "
                    f"roofline {row['roofline_fraction']:.0%} "
                    f"(floor {floor * 1e3:.0f} ms at {bandwidth:.0f} GB/s)  "
                    f"{row['images_per_s'] * 60:.2f} images/min",
                    flush=True,
                )
    return rows


@torch.inference_mode()
def hf_janus_cases(model, ns: list[int], reps: int) -> list[dict]:
    """The image-token step of transformers' `generate(generation_mode="image")` (static cache,
    its CFG logits processor, multinomial) against ours, interleaved. Its loop yields nothing
    until the end, so a step is the difference of two lengths, (T(12) - T(4)) / 8: the prefill
    and the setup cancel."""
    try:
        peer = hf_janus_model(model)
    except ImportError as e:
        print(f"skipped transformers' JanusForConditionalGeneration: {e}", flush=True)
        return []
    janus = janus_copy(model)
    ids = prompt_of(40)

    def peer_run(n: int, tokens: int) -> float:
        peer.model.vision_model.config.num_image_tokens = tokens
        start = time.perf_counter()
        peer.generate(
            torch.tensor([ids] * n),
            attention_mask=torch.ones(n, len(ids), dtype=torch.long),
            generation_mode="image",
        )
        return time.perf_counter() - start

    rows = []
    for n in ns:
        peer_run(n, 2)  # warm-up: first allocations
        ours, theirs = [], []
        for _ in range(reps):
            ours += step_times(janus_codes(janus, ids, n, 10))
            theirs.append((peer_run(n, 12) - peer_run(n, 4)) / 8)
        a, b = statistics.median(ours), statistics.median(theirs)
        row = {
            "case": f"decode step Janus-Pro-1B bfloat16 N={n} ctx 40 vs JanusForConditionalGeneration",
            "n": n,
            "janus_ms": a * 1e3,
            "peer_ms": b * 1e3,
            "speedup": b / a,
        }
        print(
            f"{row['case']:<46} janus {a * 1e3:7.1f} ms  peer {b * 1e3:7.1f} ms  speed-up x{b / a:.2f}",
            flush=True,
        )
        rows.append(row)
    return rows


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


def decode_7b_case(steps: int) -> dict | None:
    """Janus-Pro-7B's bf16 image-token step at N=1. Our kernels re-lay the weights out, and two
    14 GB copies do not fit in 24 GB: the peer runs first on the loaded weights, then the same
    model is prepared in place for janus, so these two are not interleaved."""
    if available_bytes() < 20 * GiB:
        print(
            f"skipped Janus-Pro-7B: {available_bytes() / GiB:.1f} GiB of memory available, under 20",
            flush=True,
        )
        return None
    model = random_model("Janus-Pro-7B", torch.bfloat16, ("generation",))  # the step reads no vision encoder
    ids = prompt_of(40)
    peer = statistics.median(step_times(peer_codes(model, peer_model(model), ids, 1, steps)))
    janus = prepare_model(model, torch.device("cpu"), torch.bfloat16)
    # right before the run, as decode_cases does
    bandwidth = read_gbs(torch.ones(GiB // 4, dtype=torch.bfloat16))
    a = statistics.median(step_times(janus_codes(janus, ids, 1, steps)))
    floor = decode_path_bytes(janus) / (bandwidth * 1e9)
    row = {
        "case": "decode step Janus-Pro-7B bfloat16 N=1 ctx 40 (not interleaved)",
        "dtype": "bfloat16",
        "int8": False,
        "compiled": False,
        "n": 1,
        "context": 40,
        "model": "Janus-Pro-7B",
        "janus_ms": a * 1e3,
        "peer_ms": peer * 1e3,
        "speedup": peer / a,
        "floor_ms": floor * 1e3,
        "bandwidth_gbs": bandwidth,
        "roofline_fraction": floor / a,
        "images_per_s": 1 / (IMAGE_TOKENS * a),
    }
    print(
        f"{row['case']:<46} janus {a * 1e3:7.1f} ms  peer {peer * 1e3:7.1f} ms  speed-up x{peer / a:.2f}  "
        f"roofline {floor / a:.0%} (floor {floor * 1e3:.0f} ms at {bandwidth:.0f} GB/s)",
        flush=True,
    )
    return row


def int8_quality(model, steps: int) -> dict:
    """Greedy image tokens of int8 against the unquantized model on the same weights (teacher
    forced, one image, CFG 5), and the largest guided-logit error over those steps."""
    ids = prompt_of(40)
    a = greedy_agreement(
        model, janus_copy(model, "int8"), ids, make_uncond_ids(ids, 0), n=1, cfg=5.0, steps=steps
    )
    dt = str(next(model.parameters()).dtype).removeprefix("torch.")
    row = {
        "case": f"int8 quality vs {dt}, {steps} greedy steps",
        "token_agreement": a.tokens,
        "max_logit_error": a.max_logit_error,
        "logit_scale": a.logit_scale,
    }
    print(
        f"int8 quality vs {dt} ({steps} greedy image tokens, same weights): agreement {a.tokens:.1%}, "
        f"max logit error {a.max_logit_error:.3f} (logits up to {a.logit_scale:.2f})",
        flush=True,
    )
    return row


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


def rss_child(who: str, steps: int) -> None:
    """A `generate -n 4` of one prompt in this fresh process (bf16): build, decode STEPS image
    tokens, VQ-decode all 576 (the codes tiled when STEPS is shorter) as each one does it:
    janus loads no vision encoder, frees the KV cache and decodes image by image
    (text_to_image.py), the official script loads the whole model and decodes the batch at
    once; print the peak RSS."""
    model = random_model("Janus-Pro-1B", torch.bfloat16, ("generation",) if who == "janus" else None)
    ids = prompt_of(40)
    if who == "janus":
        codes = janus_codes(prepare_model(model, torch.device("cpu"), torch.bfloat16), ids, 4, steps)
    else:
        codes = peer_codes(model, peer_model(model), ids, 4, steps)
    grid = torch.stack(list(codes), dim=1)  # (4, steps)
    grid = grid.repeat(1, -(-IMAGE_TOKENS // steps))[:, :IMAGE_TOKENS]  # (4, 576)
    if who == "janus":
        model.language_model.free_cache()
        for row in grid.split(1):
            model.decode_codes(row)  # (1, 3, 384, 384)
    else:
        model.decode_codes(grid)  # (4, 3, 384, 384)
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak into a child across exec.
    status = Path("/proc/self/status").read_text()
    print(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024)


def peak_rss_case(steps: int) -> dict:
    peaks = {}
    for who in ("janus", "peer"):
        args = [
            sys.executable,
            __file__,
            "--rss-child",
            who,
            "--rss-steps",
            str(steps),
            "--threads",
            str(torch.get_num_threads()),
        ]
        r = subprocess.run(args, capture_output=True, text=True, check=True)
        peaks[who] = int(r.stdout.split()[-1]) / 1e9
    row = {
        "case": f"peak RSS, generate -n 4 bf16 ({steps} of {IMAGE_TOKENS} tokens, VQ decode)",
        "janus_gb": peaks["janus"],
        "peer_gb": peaks["peer"],
        "ratio": peaks["janus"] / peaks["peer"],
    }
    print(
        f"{row['case']:<46} janus {peaks['janus']:.2f} GB  peer {peaks['peer']:.2f} GB "
        "(transformers imported)  "
        f"janus/peer {row['ratio']:.2f}",
        flush=True,
    )
    return row


def table(rows: list[dict]) -> str:
    lines = ["| case | janus-cli | peer | peer/janus | roofline | images/min |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "janus_ms" in r:
            extra = (
                f"{r['roofline_fraction']:.0%} | {r['images_per_s'] * 60:.2f}"
                if "roofline_fraction" in r
                else "| "
            )
            lines.append(
                f"| {r['case']} | {r['janus_ms']:.0f} ms | {r['peer_ms']:.0f} ms "
                f"| x{r['speedup']:.2f} | {extra} |"
            )
        elif "janus_gb" in r:
            lines.append(
                f"| {r['case']} | {r['janus_gb']:.2f} GB | {r['peer_gb']:.2f} GB "
                f"| x{1 / r['ratio']:.2f} | | |"
            )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    def pick(**want) -> dict:
        return next(r for r in rows if all(r.get(k) == v for k, v in want.items()))

    eager = dict(dtype="bfloat16", int8=False, compiled=False, context=40)
    n1, n4 = pick(**eager, n=1), pick(**eager, n=4)
    q4 = pick(dtype="bfloat16", int8=True, n=4, context=40)
    flow = [r for r in rows if r["case"].startswith("JanusFlow")][-1]  # the long prompt
    rss = next(r for r in rows if "janus_gb" in r)
    return (
        f"SUMMARY decode_speedup_n1={n1['speedup']:.2f} decode_speedup_n4={n4['speedup']:.2f} "
        f"int8_speedup_n4={q4['peer_ms'] / q4['janus_ms']:.2f} "
        f"bandwidth_fraction={n1['roofline_fraction']:.2f} "
        f"flow_prefix_speedup={flow['speedup']:.2f} peak_rss_ratio={rss['ratio']:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="fewer steps, repeats and cases (under 10 minutes on 2 cores)"
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time janus --compile's step (bf16; compiling takes minutes per N)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="default: the cores the load average leaves idle"
    )
    ap.add_argument("--rss-child", choices=["janus", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--rss-steps", type=int, default=IMAGE_TOKENS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or idle_cores())
    if args.rss_child:
        rss_child(args.rss_child, args.rss_steps)
        return
    t0 = time.perf_counter()
    steps, reps = (10, 2) if args.quick else (32, 3)
    contexts = [40] if args.quick else [40, 600]  # the cost of a growing cache shows at long contexts
    bw = {"float32": bandwidth_gbs(torch.float32), "bfloat16": bandwidth_gbs(torch.bfloat16)}
    result = {
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "read_bandwidth_gbs": bw,
        "cases": [],
    }
    print(
        f"threads: {torch.get_num_threads()} of {os.cpu_count()} cores "
        f"(load average {os.getloadavg()[0]:.1f} at start)"
    )
    # The machine's bandwidth at the start, for the record; each decode case measures its own
    # next to its runs (decode_cases), because it swings within minutes.
    print(
        f"read bandwidth at the start: fp32 {bw['float32']:.1f} GB/s, bf16 {bw['bfloat16']:.1f} GB/s "
        "(a decode case's floor uses the readings taken right before its runs)",
        flush=True,
    )
    rows = result["cases"]
    model = random_model("Janus-Pro-1B", torch.bfloat16)
    rows += decode_cases(
        model,
        torch.bfloat16,
        [1, 4, 16],
        [1, 4] if args.quick else [1, 4, 16],
        contexts,
        steps,
        reps,
        args.compile,
    )
    rows += hf_janus_cases(model, [1, 4], 2 if args.quick else 3)
    rows.append(int8_quality(model, 32 if args.quick else 64))
    rows += understanding_case(model, 600, 8 if args.quick else 24, 1 if args.quick else 3)
    rows.append(vq_decode_case(model, 2 if args.quick else 5))
    del model
    rows += [r for r in [vae_decode_case(torch.bfloat16, 2 if args.quick else 5)] if r]
    # fp32 Janus-Pro-1B without its vision encoder is 6.6 GB, shared by both, plus 6 GB of
    # janus's re-laid-out linears; leave headroom for whoever shares the machine.
    if available_bytes() > FP32_BYTES:
        model = random_model("Janus-Pro-1B", torch.float32, ("generation",))
        rows += decode_cases(
            model,
            torch.float32,
            [1] if args.quick else [1, 4, 16],
            [],
            contexts,
            steps,
            1 if args.quick else reps,
        )
        del model
    else:
        print(
            f"skipped fp32 decode: {available_bytes() / GiB:.1f} GiB of memory available, "
            f"under {FP32_BYTES / GiB:.0f}",
            flush=True,
        )
    # both loops run it
    flow = prepare_model(random_model("JanusFlow-1.3B", torch.bfloat16), torch.device("cpu"), torch.bfloat16)
    for length in [200] if args.quick else [37, 200]:  # the golden prompt's 37 tokens, and a long prompt
        # interleaved medians: single pairs swung x1.2-1.4, medians of 3 x1.30-1.37
        rows.append(flow_step_case(flow, length, 5))
    del flow
    rows.append(peak_rss_case(16 if args.quick else IMAGE_TOKENS))
    if not args.quick:
        rows += [r for r in [decode_7b_case(steps)] if r]
    n1 = next(
        r
        for r in rows
        if r.get("n") == 1 and r.get("dtype") == "bfloat16" and not r["int8"] and not r["compiled"]
    )
    n16 = next(
        r
        for r in rows
        if r.get("n") == 16 and r.get("dtype") == "bfloat16" and not r["int8"] and not r["compiled"]
    )
    result["images_per_s_n16_over_n1"] = n16["images_per_s"] / n1["images_per_s"]
    print(f"images/s: N=16 is x{result['images_per_s_n16_over_n1']:.2f} of N=1 (bf16, janus)")
    print(table(rows))
    result["seconds"] = time.perf_counter() - t0
    result["summary"] = summary(rows)
    out = (
        ROOT / "benchmarks" / "results" / f"{time.strftime('%Y-%m-%d')}{'-quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)} ({result['seconds'] / 60:.1f} min)")
    print(result["summary"])


if __name__ == "__main__":
    main()
