"""int4 kernels at Janus-Pro decode shapes: ours (AVX512-VNNI W4A8) against PyTorch's
`_weight_int4pack_mm_for_cpu` and our bf16 and int8 (W8A8) kernels, and our int8 against
PyTorch's `_weight_int8pack_mm` (models/quantize.Int8Linear's own path), per linear and per whole
image-token step (full-size random weights), interleaved in one run; ratios, not absolute
times, are what carry from one run to the next on a shared machine. Each linear cycles through
copies of its weight larger than the L3 cache together, so every call reads DRAM as a decode
step does. Times are the PCTth percentile of the calls or steps (default 20): on a machine that
other jobs share, the slow tail is preemption, not the kernel.

    flock /tmp/janus-heavy.lock python benchmarks/int4_kernels.py [--model Janus-Pro-1B] [--quick]
        [--skip-linears] [--layers 4: time only 4 full-size layers, not the whole model]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from machine import read_gbs  # noqa: E402
from workloads import decode_path_bytes, janus_codes, janus_copy, prompt_of, random_model, step_times  # noqa: E402

from janus_cli.config import JanusConfig  # noqa: E402
from janus_cli.kernels.int8 import Int8RowsLinear  # noqa: E402
from janus_cli.kernels.layers import on_kernels, use_rows_layers  # noqa: E402
from janus_cli.kernels.rows import RowsLinear  # noqa: E402
from janus_cli.models.int4 import GROUPS, Int4Linear  # noqa: E402
from janus_cli.models.layout import swap_linears  # noqa: E402
from janus_cli.models.llama import Llama  # noqa: E402
from janus_cli.models.quantize import Int8Linear, quantize_linear  # noqa: E402

ROOT = Path(__file__).parents[1]


def linear_shapes(model: str) -> dict[str, tuple[int, int]]:
    """(N, K) of a block's fused linears, as the decode step runs them."""
    c = JanusConfig.from_file(ROOT / "weights" / "published" / model / "config.json").llm
    return {
        "qkv": ((c.num_heads + 2 * c.num_kv_heads) * c.head_dim, c.hidden_size),
        "o": (c.hidden_size, c.num_heads * c.head_dim),
        "gate_up": (2 * c.intermediate_size, c.hidden_size),
        "down": (c.hidden_size, c.intermediate_size),
    }


class TorchInt4(nn.Module):
    """PyTorch's CPU int4 kernel over an Int4Linear's codes (Int4Linear.torch_int4's copy)."""

    def __init__(self, q4: Int4Linear):
        super().__init__()
        q4.torch_int4(torch.zeros(1, q4.in_features, dtype=torch.bfloat16))  # builds its layout
        self.register_buffer("packed", q4.torch_packed[0])
        self.register_buffer("scales_zeros", q4.torch_packed[1])
        self.group = q4.group

    def forward(self, x):
        return torch._weight_int4pack_mm_for_cpu(x, self.packed, self.group, self.scales_zeros)


COPIES_BYTES = 128 * 2**20  # > this CPU's 32 MiB L3 several times over


def percentile(values: list[float], pct: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * pct / 100))]


def module_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.buffers())


def copies_of(module: nn.Module) -> list[nn.Module]:
    """MODULE and deep copies of it, COPIES_BYTES of weights in all."""
    count = max(1, -(-COPIES_BYTES // module_bytes(module)))
    return [module] + [copy.deepcopy(module) for _ in range(count - 1)]


def linear_table(model: str, rows_list: list[int], reps: int, pct: float, groups: list[int]) -> None:
    gen = torch.Generator().manual_seed(0)
    print(f"\nper linear ({model}, bf16 activations, p{pct:.0f} ms of {reps} interleaved rounds)")
    for name, (n, k) in linear_shapes(model).items():
        linear = nn.Linear(k, n, bias=False).to(torch.bfloat16)
        with torch.no_grad():
            linear.weight.normal_(0, 0.02, generator=gen)
        int4 = {g: Int4Linear.from_linear(linear, g) for g in groups}
        q8 = Int8Linear.from_linear(linear)
        modules = {
            "bf16": RowsLinear.from_linear(linear),
            "int8": Int8RowsLinear.from_linears(q8),
            "torch int8": q8,
            **{f"int4 g{g}": q4 for g, q4 in int4.items()},
            **{f"torch int4 g{g}": TorchInt4(q4) for g, q4 in int4.items()},
        }
        kernels = {label: copies_of(module) for label, module in modules.items()}
        for m in rows_list:
            x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
            times: dict[str, list[float]] = {name: [] for name in kernels}
            for _ in range(reps):
                for label, fns in kernels.items():
                    for fn in fns:
                        t = time.perf_counter()
                        fn(x)
                        times[label].append(time.perf_counter() - t)
            med = {label: percentile(t, pct) * 1e3 for label, t in times.items()}
            cells = "  ".join(f"{label} {ms:.3f}" for label, ms in med.items())
            gbs = module_bytes(kernels["int4 g64"][0]) / (med["int4 g64"] * 1e6)
            ours = med["int4 g64"]
            print(
                f"{name:>8} {n}x{k} M={m}: {cells}  | int4 g64 vs bf16 x{med['bf16'] / ours:.2f} "
                f"vs int8 x{med['int8'] / ours:.2f} vs torch x{med['torch int4 g64'] / ours:.2f} "
                f"({gbs:.0f} GB/s) | int8 vs bf16 x{med['bf16'] / med['int8']:.2f} "
                f"vs torch int8 x{med['torch int8'] / med['int8']:.2f}",
                flush=True,
            )


def layers_table(model: str, layers: int, ns: list[int], steps: int, reps: int, pct: float) -> None:
    """The LLM part of a token step (the blocks, one kernel call each where it runs) on LAYERS
    full-size random layers, scaled to the model's layer count: a light stand-in for
    step_table (no image head, no sampling; under 2 GB and a CPU-minute)."""
    full = JanusConfig.from_file(ROOT / "weights" / "published" / model / "config.json").llm
    cfg = dataclasses.replace(full, num_layers=layers, vocab_size=256)
    with torch.device("meta"):
        base = Llama(cfg).to(torch.bfloat16)
    base = base.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(0)
    for p in base.parameters():
        p.normal_(0, 0.02, generator=gen)
    runs = {}
    for scheme in ("none", "int8", "int4"):
        llm = copy.deepcopy(base)
        if scheme != "none":
            swap_linears(llm.model.layers, lambda lin, s=scheme: quantize_linear(lin, s))
        use_rows_layers(llm)
        swap_linears(llm.model.layers, on_kernels, kinds=(nn.Linear, Int8Linear))
        runs[scheme] = llm
    context = 40
    print(
        f"\nLLM blocks of a token step ({model}: {layers} of {full.num_layers} layers timed, "
        f"scaled; p{pct:.0f})"
    )
    for n in ns:
        rows = 2 * n
        times: dict[str, list[float]] = {q: [] for q in runs}
        for _ in range(reps):
            for q, llm in runs.items():
                llm.setup_cache(rows, context + steps)
                x = torch.randn(rows, context, cfg.hidden_size, generator=gen).to(torch.bfloat16)
                llm(x, torch.arange(context), used=context)  # the prompt
                for i in range(steps):
                    t = time.perf_counter()
                    llm(x[:, :1].contiguous(), torch.tensor([context + i]), used=context + i + 1)
                    times[q].append((time.perf_counter() - t) * full.num_layers / layers)
        med = {q: percentile(t, pct) for q, t in times.items()}
        cells = "  ".join(f"{q} {ms * 1e3:.1f} ms" for q, ms in med.items())
        print(
            f"N={n}: {cells}  | int4 vs bf16 x{med['none'] / med['int4']:.2f}, "
            f"vs int8 x{med['int8'] / med['int4']:.2f}; int8 vs bf16 x{med['none'] / med['int8']:.2f}",
            flush=True,
        )


def step_table(model: str, ns: list[int], steps: int, reps: int, pct: float) -> None:
    base = random_model(model, torch.bfloat16, parts=("generation",))
    runs = {q: janus_copy(base, q) for q in ("none", "int8", "int4")}
    probe = torch.ones(2**28, dtype=torch.bfloat16)  # 512 MiB
    ids = prompt_of(40)
    print(
        f"\nwhole image-token step ({model}, full-size random weights, p{pct:.0f} of {reps} x {steps} steps)"
    )
    for n in ns:
        times: dict[str, list[float]] = {q: [] for q in runs}
        gbs = []
        for _ in range(reps):
            for q, m in runs.items():
                gbs.append(read_gbs(probe, 2))
                times[q] += step_times(janus_codes(m, ids, n, steps))
        bandwidth = statistics.median(gbs)
        med = {q: percentile(t, pct) for q, t in times.items()}
        for q, m in runs.items():
            floor = decode_path_bytes(m) / (bandwidth * 1e9)
            print(
                f"N={n} {q:>4}: {med[q] * 1e3:6.1f} ms  floor {floor * 1e3:5.1f} ms ({floor / med[q]:.0%})  "
                f"vs bf16 x{med['none'] / med[q]:.2f}  vs int8 x{med['int8'] / med[q]:.2f}  "
                f"({bandwidth:.0f} GB/s)",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="Janus-Pro-1B")
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--skip-linears", action="store_true")
    ap.add_argument("--skip-steps", action="store_true")
    ap.add_argument("--layers", type=int, default=0, help="time only this many LLM layers (light)")
    ap.add_argument("--pct", type=float, default=20.0, help="percentile of calls and steps reported")
    ap.add_argument("--reps", type=int, default=0, help="interleaved rounds (default 7, 3 with --quick)")
    ap.add_argument("--groups", default=",".join(map(str, GROUPS)), help="int4 group sizes, e.g. 64")
    a = ap.parse_args()
    torch.set_num_threads(2)
    reps = a.reps or (3 if a.quick else 7)
    with torch.inference_mode():
        if not a.skip_linears:
            linear_table(a.model, [2, 8], reps, a.pct, [int(g) for g in a.groups.split(",")])
        if a.layers:
            layers_table(a.model, a.layers, [1, 4], 8 if a.quick else 16, reps, a.pct)
        elif not a.skip_steps:
            step_table(a.model, [1, 4], 8 if a.quick else 16, reps, a.pct)


if __name__ == "__main__":
    main()
