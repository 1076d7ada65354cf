"""The image-token step, timed: janus-cli (bf16, int8, int4, --compile) against the official loop
(transformers' LlamaForCausalLM, growing DynamicCache) and against transformers' own
JanusForConditionalGeneration, on the same weight tensors, interleaved."""

from __future__ import annotations

import statistics
import time

import torch
from machine import GiB, available_bytes, read_gbs
from peers import hf_janus_model, peer_codes, peer_model
from workloads import (
    IMAGE_TOKENS,
    decode_path_bytes,
    janus_codes,
    janus_copy,
    kv_bytes,
    prompt_of,
    random_model,
    step_times,
)

from janus_cli.pipelines.session import prepare_model


def decode_cases(
    model,
    dtype: torch.dtype,
    ns: list[int],
    quantized_ns: dict[str, list[int]],
    contexts: list[int],
    steps: int,
    reps: int,
    compile: bool = False,
) -> list[dict]:
    """Per N and context: janus (and janus quantized by each scheme of QUANTIZED_NS for the Ns it
    lists, and janus --compile if COMPILE) against the peer, interleaved. The read bandwidth is
    measured right before and right after each janus run, and a run's roofline fraction is its
    floor (the bytes its step reads: quantized weights read fewer) at the mean of the two over
    its median step: this VM's read bandwidth swings 25-50 GB/s from one second to the next
    even when nothing else of ours runs (2026-12-07), so a figure from the start would misplace
    every later roofline, and one reading before a run alone put a bf16 step at 138 %. The row
    gives the median fraction and the median bandwidth."""
    peer = peer_model(model)
    janus = janus_copy(model)
    quantized = {scheme: janus_copy(model, scheme) for scheme, q_ns in quantized_ns.items() if q_ns}
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
                **{scheme: m for scheme, m in quantized.items() if n in quantized_ns[scheme]},
                **({"compiled": compiled} if compile else {}),
            }
            if compile:  # compiling (minutes, once per shape) is not a step
                list(janus_codes(compiled, ids, n, 3, compile=True))
            times: dict[str, list[float]] = {k: [] for k in [*runs, "peer"]}
            fractions: dict[str, list[float]] = {k: [] for k in runs}
            bandwidths = []
            for _ in range(reps):  # interleave, so load changes hit all alike
                for name, m in runs.items():
                    before = read_gbs(probe, 2)
                    t = step_times(janus_codes(m, ids, n, steps, compile=name == "compiled"))
                    bandwidths.append((before + read_gbs(probe, 2)) / 2)  # bracketing the run
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
                label = {"janus": dt, "compiled": f"{dt} --compile"}.get(name, f"{dt} {name}")
                row = {
                    "case": f"decode step Janus-Pro-1B {label} N={n} ctx {context}",
                    "dtype": dt,
                    "quantize": name if name in quantized else "none",
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
        "quantize": "none",
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
