"""A full-size random-weight checkpoint of a published model, in its published layout.

    python benchmarks/full_size.py Janus-Pro-7B DIR

Writes DIR with the config and side files of weights/published/NAME and every tensor its
manifest lists (key, shape, bf16), drawn N(0, 0.02) (norm weights 1), in the manifest's layout
(Janus-Pro-7B: two `.bin` shards and their index, as published). Memory stays low: each shard
is streamed tensor by tensor into a scratch file that torch.save then reads memory-mapped, so a
14.8 GB checkpoint is written on a 24 GB machine beside other work (about 5 minutes on 2 cores).
The folder appears only when complete (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
SIDE = ("config.json", "preprocessor_config.json", "processor_config.json", "special_tokens_map.json")


def draw(key: str, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    t = torch.empty(shape, dtype=torch.bfloat16)
    if len(shape) == 1 and "norm" in key and key.endswith(".weight"):
        return t.fill_(1.0)
    return t.normal_(0, 0.02, generator=gen)


def write_shard(tensors: list[dict], path: Path, gen: torch.Generator) -> int:
    """torch.save of TENSORS (manifest entries) to PATH, staged through a scratch file; bytes."""
    sizes = [math.prod(t["shape"]) for t in tensors]
    scratch = path.with_suffix(".scratch")
    with scratch.open("wb") as f:
        for t in tensors:
            f.write(draw(t["key"], t["shape"], gen).view(torch.uint8).numpy().tobytes())
    flat = torch.from_file(str(scratch), shared=False, size=sum(sizes), dtype=torch.bfloat16)
    state, start = {}, 0
    for t, n in zip(tensors, sizes, strict=True):
        state[t["key"]] = flat[start : start + n].view(t["shape"])  # views of one storage per shard
        start += n
    torch.save(state, path)
    del state, flat
    scratch.unlink()
    return 2 * sum(sizes)


def write_full_size(name: str, out: Path, seed: int = 0) -> Path:
    src = ROOT / "weights" / "published" / name
    manifest = json.loads((src / "manifest.json").read_text())
    if out.is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".partial-"))
    try:
        for side in SIDE:
            if (src / side).is_file():
                shutil.copy(src / side, tmp)
        gen = torch.Generator().manual_seed(seed)
        tensors = manifest["tensors"]
        if manifest["layout"] != "sharded-bin":
            state = {t["key"]: draw(t["key"], t["shape"], gen) for t in tensors}
            torch.save(state, tmp / "pytorch_model.bin")
        else:
            shards = manifest["shard_files"]
            per = math.ceil(len(tensors) / len(shards))
            weight_map, total = {}, 0
            for s, file in enumerate(shards):
                part = tensors[s * per : (s + 1) * per]
                total += write_shard(part, tmp / file, gen)
                weight_map.update({t["key"]: file for t in part})
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (tmp / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a folder of weights/published, e.g. Janus-Pro-7B")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    print(write_full_size(args.name, args.out), file=sys.stdout)
