"""Peak memory in fresh processes: a `generate -n 4`-like run of janus and of the official script
(Janus-Pro-1B, bf16), and Janus-Pro-7B loaded quantized from its published bf16 `.bin` shards
plus 32 image-token steps (the checkpoint written once by full_size.py into a cache folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from peers import peer_codes, peer_model
from workloads import IMAGE_TOKENS, janus_codes, prompt_of, random_model

from janus_cli.pipelines.session import prepare_model

RUN = Path(__file__).parent / "run.py"


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
    print(peak_rss())


def peak_rss_case(steps: int) -> dict:
    peaks = {}
    for who in ("janus", "peer"):
        args = [
            sys.executable,
            str(RUN),
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


def peak_rss() -> int:
    """This process's peak resident set in bytes: VmHWM, not getrusage's ru_maxrss (Linux
    carries the parent's peak into a child across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def rss_7b_child(folder: str, scheme: str, steps: int) -> None:
    """In this fresh process: load the Janus-Pro-7B checkpoint FOLDER for generation, quantized
    by SCHEME while loading, prepare it as `janus` does, decode STEPS image tokens (N=1); print
    the peak RSS, the load seconds and the median step."""
    import statistics
    import time

    from janus_cli.checkpoints.load import load_model

    t = time.perf_counter()
    model = load_model(Path(folder), torch.bfloat16, "cpu", ("generation",), quantize=scheme)
    model = prepare_model(model, torch.device("cpu"), torch.bfloat16)
    load_s = time.perf_counter() - t
    from workloads import step_times

    step = statistics.median(step_times(janus_codes(model, prompt_of(40), 1, steps)))
    print(peak_rss(), load_s, step)


def rss_7b_case(folder: Path, scheme: str, steps: int) -> dict:
    """Janus-Pro-7B loaded as SCHEME from its bf16 `.bin` shards + STEPS steps, in a fresh process."""
    args = [sys.executable, str(RUN), "--rss-7b", str(folder), "--rss-7b-scheme", scheme]
    args += ["--rss-steps", str(steps), "--threads", str(torch.get_num_threads())]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    peak, load_s, step = (float(x) for x in r.stdout.split()[-3:])
    row = {
        "case": f"peak RSS, Janus-Pro-7B {scheme} from the bf16 .bin shards, load + {steps} steps N=1",
        "rss_7b_gb": peak / 1e9,
        "quantize": scheme,
        "load_s": load_s,
        "step_ms": step * 1e3,
    }
    print(
        f"{row['case']:<46} peak RSS {peak / 1e9:.2f} GB, load {load_s:.0f} s, step {step * 1e3:.0f} ms",
        flush=True,
    )
    return row
