"""Speed and memory of janus-cli against the official algorithm, measured side by side in one run.

    python benchmarks/run.py [--quick] [--threads N]

Builds full-size random-weight models of the published shapes (Janus-Pro-1B and JanusFlow-1.3B
from their real config.json) and times, interleaved and repeated, the image-token decode step of
janus-cli (static KV cache, prompt prefilled once and shared; bf16, int8 weights, fp32) against
the official loop: transformers' `LlamaForCausalLM` with its growing `DynamicCache`, `gen_head`,
logit CFG, sampling and `gen_embed` + `gen_aligner` (needs `pip install -e ".[bench]"`). Both use
the very same weight tensors. Also: int8 and int4 against bf16 in the same run, what they cost
in the sampled distribution (teacher-forced KL, quality.py), one JanusFlow step, the peak RSS of
a `generate -n 4`-like run of each, and of Janus-Pro-7B loaded as int4 from its bf16 shards plus
32 steps, in fresh processes (memory.py; the 14.8 GB checkpoint is written once into
--cache, about 5 minutes).
Prints medians, janus/peer ratios and the fraction of the memory-bandwidth roofline, then one
`SUMMARY` line; writes benchmarks/results/<date>.json. Wall-clock numbers are noisy on shared
machines: read the ratios. The cases live in decode.py, component_cases.py, quality.py and
memory.py, the models they run in workloads.py, the peers in peers.py, the machine's facts in
machine.py, the table and SUMMARY line in report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# as `janus` runs (janus_cli/cli/__init__.py), for both sides
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # the sibling modules, also when loaded by path (tests)

import torch  # noqa: E402
from component_cases import flow_step_case, understanding_case, vae_decode_case, vq_decode_case  # noqa: E402
from decode import decode_7b_case, decode_cases, hf_janus_cases  # noqa: E402
from full_size import write_full_size  # noqa: E402
from machine import GiB, available_bytes, bandwidth_gbs, idle_cores, machine  # noqa: E402
from memory import peak_rss_case, rss_7b_case, rss_7b_child, rss_child  # noqa: E402
from quality import quality_rows  # noqa: E402
from report import summary, table  # noqa: E402
from workloads import IMAGE_TOKENS, ROOT, prompt_of, random_model  # noqa: E402

from janus_cli.pipelines.session import prepare_model  # noqa: E402

FP32_BYTES = 15 * GiB  # what the fp32 decode case needs free (main)


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
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("JANUS_BENCH_CACHE", Path.home() / ".cache" / "janus-cli" / "bench")),
        help="where the full-size Janus-Pro-7B checkpoint is written once (15 GB; env JANUS_BENCH_CACHE)",
    )
    ap.add_argument("--rss-child", choices=["janus", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--rss-steps", type=int, default=IMAGE_TOKENS, help=argparse.SUPPRESS)
    ap.add_argument("--rss-7b", help=argparse.SUPPRESS)
    ap.add_argument("--rss-7b-scheme", default="int4", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or idle_cores())
    if args.rss_child:
        rss_child(args.rss_child, args.rss_steps)
        return
    if args.rss_7b:
        rss_7b_child(args.rss_7b, args.rss_7b_scheme, args.rss_steps)
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
        "(a decode case's floor uses the readings taken around each of its runs)",
        flush=True,
    )
    rows = result["cases"]
    model = random_model("Janus-Pro-1B", torch.bfloat16)
    rows += decode_cases(
        model,
        torch.bfloat16,
        [1, 4, 16],
        {"int8": [1, 4] if args.quick else [1, 4, 16], "int4": [1, 4] if args.quick else [1, 4, 16]},
        contexts,
        steps,
        reps,
        args.compile,
    )
    rows += hf_janus_cases(model, [1, 4], 2 if args.quick else 3)
    rows += quality_rows(model, prompt_of(40), 64 if args.quick else IMAGE_TOKENS)
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
            {},
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
    big = write_full_size("Janus-Pro-7B", args.cache / "janus-pro-7b-random")
    rows += [rss_7b_case(big, scheme, 32) for scheme in (["int4"] if args.quick else ["int4", "int8"])]
    if not args.quick:
        rows += [r for r in [decode_7b_case(steps)] if r]
    n1 = next(
        r
        for r in rows
        if r.get("n") == 1 and r.get("dtype") == "bfloat16" and r["quantize"] == "none" and not r["compiled"]
    )
    n16 = next(
        r
        for r in rows
        if r.get("n") == 16 and r.get("dtype") == "bfloat16" and r["quantize"] == "none" and not r["compiled"]
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
