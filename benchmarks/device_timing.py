"""The timing stages of benchmarks/device_check.py, on one device, in bf16 (float32 on the CPU,
where bf16 is emulated unless the CPU has AVX512-BF16; only the --quick dry run times there).

Full runs build full-size random-weight models of the published shapes (workloads.random_model, on
the device) and time against the official loop of peers.py on the very same tensors; --quick
runs the same code on the tiny fixture checkpoints, so the plumbing is tested on the CPU.

The image-token step is timed over the first STEPS steps of a real 576-token run (prompt of 40
tokens), so eager, --compile (one graph per N for the whole run: the cache has its final
length from the start) and the end-to-end runs share shapes and compile once per N. Every timed
item is synchronized with the device. Peak memory is the CUDA allocator's, reset per case.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from fixture_models import fixtures_module  # noqa: E402
from peers import peer_codes, peer_model  # noqa: E402
from workloads import ROOT, janus_codes, janus_copy, prompt_of, random_model, step_times  # noqa: E402

from janus_cli.checkpoints.load import load_model  # noqa: E402
from janus_cli.imageio import to_uint8  # noqa: E402
from janus_cli.pipelines.session import prepare_model  # noqa: E402
from janus_cli.pipelines.text_to_image_flow import initial_noise  # noqa: E402
from janus_cli.sampling.flow import sample_flow  # noqa: E402

TINY = {
    "Janus-Pro-1B": "janus-pro-1b-tiny",
    "Janus-Pro-7B": "janus-pro-7b-tiny",
    "JanusFlow-1.3B": "janusflow-1.3b-tiny",
}
LATENT = (4, 48, 48)  # JanusFlow's 384 x 384 image in SDXL-VAE latents (the tiny fixture's too)
PAD = 100015  # the published tokenizers' pad id (reduced modulo a tiny fixture's vocabulary)


@dataclass(frozen=True)
class Plan:
    ns: tuple[int, ...]  # image counts of the step timing
    e2e_ns: tuple[int, ...]  # image counts of the end-to-end runs
    steps: int  # token steps timed per run
    reps: int  # interleaved runs per N
    e2e_tokens: int | None  # codes sampled end to end (None: all 576; fewer are tiled for the decode)
    flow_steps: int
    flow_ns: tuple[int, ...]


FULL = Plan(ns=(1, 16, 64), e2e_ns=(1, 16), steps=24, reps=3, e2e_tokens=None, flow_steps=30, flow_ns=(1, 4))
# --quick: the plumbing on the tiny fixtures, in CPU seconds (a 576-token run is minutes on a busy CPU)
QUICK = Plan(ns=(1, 2), e2e_ns=(1,), steps=4, reps=1, e2e_tokens=8, flow_steps=2, flow_ns=(1,))


def dtype_for(device: str) -> torch.dtype:
    return torch.bfloat16 if device == "cuda" else torch.float32


def model_for(name: str, device: str, quick: bool, parts: tuple[str, ...] | None = ("generation",)):
    """Published model NAME on DEVICE: random full-size weights, or with QUICK its tiny fixture
    checkpoint."""
    if quick:
        return load_model(fixtures_module().checkpoint_dir(TINY[name]), dtype_for(device), device, parts)
    return random_model(name, dtype_for(device), parts, device)


def prompt(model, length: int = 40) -> list[int]:
    """prompt_of's ids, folded into MODEL's vocabulary (the tiny fixtures have 1280 ids)."""
    vocab = model.cfg.llm.vocab_size
    return [i % vocab for i in prompt_of(length)]


def synced(items: Iterator[Tensor], device: str) -> Iterator[Tensor]:
    """ITEMS, each yielded once the device has finished it (the peer's loop never waits)."""
    for item in items:
        if device == "cuda":
            torch.cuda.synchronize()
        yield item


def step_ms(codes: Iterator[Tensor], device: str, steps: int) -> list[float]:
    """Milliseconds of the first STEPS token steps after the prefill; closes the loop there."""
    items = synced(codes, device)
    try:
        return [t * 1e3 for t in step_times(itertools.islice(items, steps + 1))]
    finally:
        codes.close()


@contextlib.contextmanager
def peak(device: str) -> Iterator[dict]:
    """{"peak_gb": the allocator's peak inside the block} on CUDA, None elsewhere."""
    out: dict = {"peak_gb": None}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield out
    if device == "cuda":
        torch.cuda.synchronize()
        out["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)


def free(*models) -> None:
    for m in models:
        if m is not None:
            m.language_model.free_cache()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def ar_stage(name: str):
    """The image-token step at each N (eager, --compile, the official loop, interleaved), then
    seconds per image end to end (576 tokens and the VQ decode of each image)."""

    def stage(device: str, quick: bool, record) -> None:
        plan = QUICK if quick else FULL
        compile = device == "cuda" or not quick  # inductor's C++ build is minutes on a small CPU
        model = model_for(name, device, quick)
        tokens = model.cfg.image_tokens
        eager = janus_copy(model)
        compiled = janus_copy(model, compile=True) if compile else None
        try:
            peer, peer_error = peer_model(model), None
        except ImportError as e:  # transformers: preinstalled on the GPU machine, a bench extra here
            peer, peer_error = None, f"{type(e).__name__}: {e}"
        ids = prompt(model)
        failures = []
        for n in plan.ns:
            case = {
                "kind": "step",
                "model": name,
                "n": n,
                "context": len(ids),
                "steps_timed": plan.steps,
                "reps": plan.reps,
            }
            try:
                with peak(device) as mem:
                    if compiled is not None:
                        t = time.perf_counter()
                        step_ms(janus_codes(compiled, ids, n, tokens, compile=True), device, 3)
                        case["compile_s"] = round(time.perf_counter() - t, 1)
                    times: dict[str, list[float]] = {"eager": [], "compiled": [], "peer": []}
                    for _ in range(plan.reps):  # interleaved, so a change of clocks or load hits all alike
                        times["eager"] += step_ms(janus_codes(eager, ids, n, tokens), device, plan.steps)
                        if compiled is not None:
                            times["compiled"] += step_ms(
                                janus_codes(compiled, ids, n, tokens, compile=True),
                                device,
                                plan.steps,
                            )
                        if peer is not None:
                            times["peer"] += step_ms(
                                peer_codes(model, peer, ids, n, tokens), device, plan.steps
                            )
                case.update(step_row(n, tokens, times), **mem, peer_error=peer_error)
                if compiled is not None:  # more graphs than Ns: recompiles (a guard on the cache?)
                    case["dynamo_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
            except Exception as e:  # one N failing (out of memory, a compile error) leaves the others
                case["error"] = f"{type(e).__name__}: {e}"[:500]
                failures.append(f"N={n}")
            record(case)
            free(eager, compiled)
        # --quick decodes in ar-pro-1b only: the tiny VQ decoder is full-size, seconds of CPU per image
        for n in plan.e2e_ns if not quick or name == "Janus-Pro-1B" else ():
            for mode, m in (("eager", eager), ("compiled", compiled)):
                if m is None:
                    continue
                try:
                    record(end_to_end(m, name, ids, n, plan.e2e_tokens or tokens, device, mode))
                except Exception as e:
                    record(
                        {
                            "kind": "end-to-end",
                            "model": name,
                            "n": n,
                            "mode": mode,
                            "error": f"{type(e).__name__}: {e}"[:500],
                        }
                    )
                    failures.append(f"end-to-end N={n} {mode}")
                free(m)
        if failures or (peer is None and not quick):
            sys.exit(f"error: {name}: failed {', '.join(failures) or 'the peer: ' + str(peer_error)}")

    return stage


def step_row(n: int, tokens: int, times: dict[str, list[float]]) -> dict:
    ms = {k: statistics.median(v) if v else None for k, v in times.items()}
    row = {f"{k}_ms": None if v is None else round(v, 3) for k, v in ms.items()}
    if ms["eager"]:
        row["images_per_s_eager"] = round(n / (tokens * ms["eager"] / 1e3), 3)
    if ms["compiled"]:
        row["images_per_s_compiled"] = round(n / (tokens * ms["compiled"] / 1e3), 3)
        row["compiled_over_eager"] = round(ms["eager"] / ms["compiled"], 3)
    if ms["peer"]:
        row["eager_speedup_vs_peer"] = round(ms["peer"] / ms["eager"], 3)
        if ms["compiled"]:
            row["compiled_speedup_vs_peer"] = round(ms["peer"] / ms["compiled"], 3)
    return row


@torch.inference_mode()
def end_to_end(model, name: str, ids: list[int], n: int, tokens: int, device: str, mode: str) -> dict:
    """N images from one prompt as `janus generate -n N` makes them: TOKENS codes (all of the
    model's, but for --quick, whose codes are tiled to fill the grid), the cache freed, then each
    image VQ-decoded and made uint8."""
    with peak(device) as mem:
        start = time.perf_counter()
        codes = torch.stack(
            list(synced(janus_codes(model, ids, n, tokens, compile=mode == "compiled"), device)),
            dim=1,
        )
        tokens_s = time.perf_counter() - start
        model.language_model.free_cache()
        grid = model.cfg.image_tokens
        codes = codes.repeat(1, -(-grid // tokens))[:, :grid]  # (N, 576)
        pixels = [to_uint8(model.decode_codes(row)) for row in codes.split(1)]  # (1, H, W, 3) each
        total = time.perf_counter() - start
    assert all(p.shape[0] == 1 and p.std() > 0 for p in pixels)
    return {
        "kind": "end-to-end",
        "model": name,
        "n": n,
        "mode": mode,
        "seconds": round(total, 3),
        "seconds_per_image": round(total / n, 3),
        "tokens": tokens,
        "token_seconds": round(tokens_s, 3),
        **mem,
    }


def int8_stage(device: str, quick: bool, record) -> None:
    """Janus-Pro-7B with int8 weights as `janus generate --quantize int8` runs it: the weight
    bytes before and after, and the allocator's peak over one image end to end."""
    model = model_for("Janus-Pro-7B", device, quick)
    bf16_gb = tensor_gb(model)  # bf16 on CUDA, float32 on the CPU
    prepare_model(model, torch.device(device), dtype_for(device), "int8")  # in place, as open_session does
    free()
    row = {
        "kind": "int8-memory",
        "model": "Janus-Pro-7B",
        "weights_bf16_gb": bf16_gb,
        "weights_int8_gb": tensor_gb(model),
    }
    if device == "cuda":
        row["allocated_after_quantize_gb"] = round(torch.cuda.memory_allocated() / 1e9, 3)
        row["peak_including_load_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    ids = prompt(model)
    plan = QUICK if quick else FULL
    if not quick:  # --quick: ar-pro-1b's end-to-end run covers the path; the decode is CPU seconds
        one = end_to_end(model, "Janus-Pro-7B", ids, 1, model.cfg.image_tokens, device, "eager")
        row.update(peak_gb=one["peak_gb"], seconds_per_image=one["seconds_per_image"])
    codes = janus_codes(model, ids, 1, model.cfg.image_tokens)
    row["step_ms_n1"] = round(statistics.median(step_ms(codes, device, plan.steps)), 3)
    record(row)


def tensor_gb(model) -> float:
    return round(sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 1e9, 3)


@torch.inference_mode()
def flow_stage(device: str, quick: bool, record) -> None:
    """A JanusFlow-1.3B image at 30 Euler steps (CFG 2) and its SDXL-VAE decode, end to end, for
    N = 1 and 4 (--quick: one image, 2 steps); the median step."""
    plan = QUICK if quick else FULL
    model = prepare_model(model_for("JanusFlow-1.3B", device, quick), torch.device(device), dtype_for(device))
    vae = vae_for(device, quick)
    ids = prompt(model, 37)  # the golden prompt's length
    uncond = [ids[0]] + [PAD % model.cfg.llm.vocab_size] * (len(ids) - 1)
    for n in plan.flow_ns:
        with peak(device) as mem:
            start = time.perf_counter()
            z = initial_noise(n, 0, "per-image", LATENT).to(device, dtype_for(device))  # (N, 4, 48, 48)
            steps, t = [], time.perf_counter()
            for latent in synced(
                sample_flow(model, [ids], [uncond], [0] * n, z, plan.flow_steps, 2.0), device
            ):
                steps.append(time.perf_counter() - t)  # the first one holds the prompt's prefill
                t, z = time.perf_counter(), latent
            pixels = to_uint8(vae.decode(z))  # (N, H, W, 3)
            total = time.perf_counter() - start
        assert pixels.shape[0] == n
        record(
            {
                "kind": "flow",
                "model": "JanusFlow-1.3B",
                "n": n,
                "steps": plan.flow_steps,
                "seconds": round(total, 3),
                "seconds_per_image": round(total / n, 3),
                "step_ms": round(statistics.median(steps[1:]) * 1e3, 3),
                **mem,
            }
        )
        free(model)


def vae_for(device: str, quick: bool):
    """The SDXL-VAE decoder: the tiny fixture's, or random weights of the published shape."""
    from janus_cli.checkpoints.vae import load_vae, vae_config
    from janus_cli.models.vae import VAEDecoder

    if quick:
        return load_vae(
            fixtures_module().checkpoint_dir("janusflow-1.3b-tiny-vae"),
            dtype=dtype_for(device),
            device=device,
        )
    config = json.loads((ROOT / "weights" / "published" / "sdxl-vae" / "config.json").read_text())
    vae = VAEDecoder(vae_config(config)).to(device, dtype_for(device)).eval()
    gen = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, 0.02, generator=gen)
    return vae


def finetune_stage(device: str, quick: bool, record) -> None:
    """A LoRA fine-tuning step (rank 16, gradient checkpointing) of Janus-Pro-1B and -7B on a
    generate sample (prompt + 576 image tokens) and a describe sample: seconds per sample and
    the allocator's peak (benchmarks/finetune.py's case; --quick: 1B's tiny fixture only)."""
    from finetune import train_case

    names = ("Janus-Pro-1B",) if quick else ("Janus-Pro-1B", "Janus-Pro-7B")
    for name in names:
        for task, parts in (("generate", ("generation",)), ("describe", ("understanding",))):
            model = model_for(name, device, quick, parts)
            with peak(device) as mem:
                row = train_case(model, task, True, 1 if quick else 4, device)
            record(
                {"kind": "finetune", "model": name, **row, "samples_per_s": 1 / row["s_per_sample"], **mem}
            )
            del model
            free()


STAGES = {
    "ar-pro-1b": ar_stage("Janus-Pro-1B"),
    "ar-pro-7b": ar_stage("Janus-Pro-7B"),
    "int8-pro-7b": int8_stage,
    "flow-1.3b": flow_stage,
    "finetune": finetune_stage,
}
