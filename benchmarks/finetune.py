"""Seconds per sample and peak RSS of a LoRA fine-tuning step, with and without gradient
checkpointing, on a full-size Janus-Pro-1B with random bf16 weights (CPU unless --device).

    flock /tmp/janus-heavy.lock python benchmarks/finetune.py --quick

Each case runs in a fresh process (the peak RSS is the process's VmHWM, or the CUDA allocator's
peak on a GPU): rank 16 on q/k/v/o/gate/up/down, AdamW, one sample per step, a generate sample
(a 40-token prompt + the 576 image tokens through gen_head) and a describe sample (a
conversation of 576 image slots + 50 prompt tokens + a 64-token answer, SigLIP's features
given, as the trainer caches them). Prints a table and one SUMMARY line; writes
benchmarks/results/finetune-<date>.json. Target: a 1B LoRA step within 12 GB of RSS on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).parents[1]
IMAGE_TOKENS = 576
IMAGE_ID = 100581  # the image slot's id (any id marks the slots; Janus-Pro's <image_placeholder>)


def child(model_name: str, task: str, checkpointing: bool, steps: int, device: str) -> dict:
    """One case in this process: build full-size random weights, train, measure the peak."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from workloads import random_model

    parts = ("generation",) if task == "generate" else ("understanding",)
    model = random_model(model_name, torch.bfloat16, parts, device)
    row = train_case(model, task, checkpointing, steps, device)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        status = Path("/proc/self/status").read_text()
        peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    return {
        "model": model_name,
        **row,
        "peak_gb": peak / 1e9,
        "peak_kind": "GPU allocated" if device == "cuda" else "RSS",
        "threads": torch.get_num_threads(),
    }


def train_case(model, task: str, checkpointing: bool, steps: int, device: str) -> dict:
    """STEPS timed LoRA steps (after one warm-up) of one TASK sample on MODEL (rank 16, AdamW):
    the median seconds per sample. Shared with the device check's finetune stage."""
    import torch

    from janus_cli.training.data import DescribeExample, generate_example
    from janus_cli.training.loop import Settings, Trainer
    from janus_cli.training.lora import add_lora

    g = torch.Generator().manual_seed(0)
    loras = add_lora(model.language_model, 16, 32, 0.05, g)
    params = [p for lora in loras.values() for p in (lora.lora_A, lora.lora_B)]
    settings = Settings(task, steps + 1, checkpointing=checkpointing, seed=0, prompt_dropout=0.1)
    trainer = Trainer(model, loras, params, settings)
    vocab = model.cfg.llm.vocab_size
    image_id = min(IMAGE_ID, vocab - 1)  # the tiny fixtures' vocabularies are smaller
    features = None
    if task == "generate":
        prompt = [1, *torch.randint(10, 1000, (38,), generator=g).tolist(), 2]
        examples = [generate_example(prompt, 0, torch.randint(0, 16384, (IMAGE_TOKENS,), generator=g))]
    else:
        text = torch.randint(
            10, vocab - 1000 if vocab > 2000 else vocab - 1, (50 + 64,), generator=g
        ).tolist()
        ids = [1, *text[:20], *[image_id] * IMAGE_TOKENS, *text[20:50], *text[50:]]
        examples = [DescribeExample(ids, len(ids) - 64, 0)]
        c = model.cfg.llm.hidden_size
        features = torch.randn(1, IMAGE_TOKENS, c, generator=g).to(device, next(model.parameters()).dtype)
    times, t = [], time.perf_counter()
    for event in trainer.train(examples, features, SimpleNamespace(image=image_id)):
        if hasattr(event, "loss"):
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
    timed = times[1:]  # the first step warms up
    return {
        "task": task,
        "checkpointing": checkpointing,
        "device": device,
        "s_per_sample": sorted(timed)[len(timed) // 2],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 timed step per case (else 4).")
    ap.add_argument("--model", default="Janus-Pro-1B")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--child", nargs=3, metavar=("TASK", "CHECKPOINTING", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        task, ckpt, steps = args.child
        print(json.dumps(child(args.model, task, ckpt == "1", int(steps), args.device)))
        return
    steps = 1 if args.quick else 4
    rows = []
    for task in ("generate", "describe"):
        for ckpt in (True, False):
            command = [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--device",
                args.device,
                "--child",
                task,
                "1" if ckpt else "0",
                str(steps),
            ]
            r = subprocess.run(command, capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"the {task} case failed")
            row = json.loads(r.stdout.splitlines()[-1])
            rows.append(row)
            print(
                f"{args.model} {task:<9} checkpointing {'on ' if ckpt else 'off'}  "
                f"{row['s_per_sample']:.2f} s/sample  peak {row['peak_kind']} {row['peak_gb']:.2f} GB",
                flush=True,
            )
    worst = max(r["peak_gb"] for r in rows if r["checkpointing"])
    print(
        f"SUMMARY finetune {args.model} {args.device}: "
        + ", ".join(
            f"{r['task']} {'ckpt' if r['checkpointing'] else 'no-ckpt'} {r['s_per_sample']:.2f} s/sample "
            f"{r['peak_gb']:.2f} GB"
            for r in rows
        )
        + f"; checkpointed peak {worst:.2f} GB ({'within' if worst <= 12 else 'OVER'} 12 GB)"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"finetune-{time.strftime('%Y-%m-%d')}-{args.device}{'-quick' if args.quick else ''}.json"
    (out / name).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
