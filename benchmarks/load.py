"""Checkpoint load time and peak memory: `.bin` vs safetensors, janus-cli vs a naive loader.

    python benchmarks/load.py [--keep DIR]

Writes a full-size random Janus-Pro-1B-shaped checkpoint (bf16, the published key set) in both
formats, then loads each in a fresh subprocess, interleaved, and reports the median wall time
and the child's peak RSS. janus-cli builds on the meta device and memory-maps the file; the
naive peer (what a plain PyTorch script does) builds the model with random init and copies a
fully read state dict into it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
CHILD = r"""
import resource, sys, time, torch
from pathlib import Path
t = time.perf_counter()
if sys.argv[1] == "janus":
    from janus_cli.checkpoints.load import load_model
    load_model(Path(sys.argv[2]), torch.bfloat16)
else:
    from janus_cli.checkpoints.load import build_model
    from janus_cli.config import JanusConfig
    from janus_cli.checkpoints.read import read_state_dict
    folder = Path(sys.argv[2])
    cfg = JanusConfig.from_file(folder / "config.json")
    with torch.device("cpu"):
        model = build_model(cfg).to_empty(device="cpu").to(torch.bfloat16)
    for p in model.parameters():
        torch.nn.init.normal_(p)  # the random init a plain nn.Module pays for
    state = {k: v.clone() for k, v in read_state_dict(folder).items()}  # read fully into RAM
    model.load_state_dict(state, strict=False)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
"""


def write_checkpoints(root: Path) -> dict[str, Path]:
    import shutil

    import torch
    from safetensors.torch import save_file

    manifest = json.loads((ROOT / "weights/published/Janus-Pro-1B/manifest.json").read_text())
    gen = torch.Generator().manual_seed(0)
    state = {
        t["key"]: torch.empty(t["shape"], dtype=torch.bfloat16).normal_(0, 0.02, generator=gen)
        for t in manifest["tensors"]
    }
    out = {}
    for name, write in [
        ("bin", lambda d: torch.save(state, d / "pytorch_model.bin")),
        ("safetensors", lambda d: save_file(state, str(d / "model.safetensors"))),
    ]:
        d = root / name
        d.mkdir(exist_ok=True)
        shutil.copy(ROOT / "weights/published/Janus-Pro-1B/config.json", d)
        write(d)
        out[name] = d
    return out


def measure(loader: str, folder: Path) -> tuple[float, float]:
    """(seconds to a loaded model, the child's peak RSS in GB), in a fresh process."""
    r = subprocess.run(
        [sys.executable, "-c", CHILD, loader, str(folder)], capture_output=True, text=True, check=True
    )
    seconds, peak_gb = map(float, r.stdout.split())
    return seconds, peak_gb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="reuse/keep the checkpoints in this folder")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    folders = (
        {n: root / n for n in ("bin", "safetensors")} if (root / "bin").exists() else write_checkpoints(root)
    )
    print(f"checkpoints ready in {time.perf_counter() - t:.0f}s under {root}")
    rows = []
    for fmt, folder in folders.items():
        for loader in ("janus", "naive"):
            times = [measure(loader, folder) for _ in range(args.reps)]
            rows.append(
                {
                    "format": fmt,
                    "loader": loader,
                    "seconds": statistics.median(t for t, _ in times),
                    "peak_rss_gb": max(m for _, m in times),
                }
            )
            print(
                f"{fmt:<12} {loader:<6} {rows[-1]['seconds']:6.1f} s   "
                f"peak RSS {rows[-1]['peak_rss_gb']:.1f} GB"
            )
    out = ROOT / "benchmarks" / "results" / f"load-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
