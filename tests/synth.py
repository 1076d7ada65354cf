"""Deterministic synthetic weights in the published checkpoint layouts.

Our implementation of the rule in the reference README: every element is a hash of
(tensor key, element index, seed), so the tiny fixture checkpoints are rebuilt from their
`manifest.json` instead of being committed. Run as a script to materialize one:

    python tests/synth.py tests/fixtures/checkpoints/janus-pro-1b-tiny OUT_DIR
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_MASK64 = (1 << 64) - 1
_BLOCK = 1 << 22  # elements hashed per numpy pass, bounds temporary memory


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    bits = x.view(np.uint32)
    bias = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))  # round half to even
    return ((bits + bias) >> np.uint32(16)).astype(np.uint16)


def synth_bits(key: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The tensor KEY as bfloat16 bit patterns (uint16) of SHAPE."""
    n = math.prod(shape)
    start = np.uint64((((zlib.crc32(key.encode()) & 0xFFFFFFFF) << 32) ^ seed) & _MASK64)
    if len(shape) >= 2:
        scale, offset = math.sqrt(3.0 / math.prod(shape[1:])), 0.0
    elif key.endswith(".weight") and "norm" in key:
        scale, offset = 0.1, 1.0
    else:
        scale, offset = 0.02, 0.0
    out = np.empty(n, dtype=np.uint16)
    with np.errstate(over="ignore"):
        for lo in range(0, n, _BLOCK):
            hi = min(n, lo + _BLOCK)
            x = _mix(np.arange(lo, hi, dtype=np.uint64) + start)
            u = (x >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0  # [-1, 1)
            out[lo:hi] = _f32_to_bf16_bits((offset + scale * u).astype(np.float32))
    return out.reshape(shape)


def synth_tensor(key: str, shape, seed: int):
    """The synthesized tensor as torch.bfloat16."""
    import torch

    bits = synth_bits(key, tuple(int(s) for s in shape), seed)
    return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)


def write_weights(manifest: dict, out: Path) -> None:
    """Write MANIFEST's tensors into OUT in the layout it names."""
    import torch
    from safetensors.torch import save_file

    seed = manifest["seed"]
    state = OrderedDict((t["key"], synth_tensor(t["key"], t["shape"], seed)) for t in manifest["tensors"])
    layout = manifest["layout"]
    if layout == "bin":
        torch.save(state, out / "pytorch_model.bin")
    elif layout == "sharded-bin":
        keys, shards = list(state), manifest.get("num_shards", 2)
        per = math.ceil(len(keys) / shards)
        weight_map, total = {}, 0
        for s in range(shards):
            name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
            part = OrderedDict((k, state[k]) for k in keys[s * per : (s + 1) * per])
            torch.save(part, out / name)
            for k, v in part.items():
                weight_map[k] = name
                total += v.numel() * v.element_size()
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    elif layout in ("safetensors", "diffusers"):
        name = "model.safetensors" if layout == "safetensors" else "diffusion_pytorch_model.safetensors"
        save_file(dict(state), str(out / name), metadata={"format": "pt"})
    else:
        raise ValueError(f"unknown layout {layout!r}")


def materialize(src: Path, out: Path) -> Path:
    """Copy checkpoint folder SRC (config, tokenizer, manifest) to OUT and write its weights."""
    with publishing(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        write_weights(json.loads((src / "manifest.json").read_text()), tmp)
    return out


@contextlib.contextmanager
def publishing(out: Path) -> Iterator[Path]:
    """A fresh folder to fill, renamed to OUT at the end: a half-written OUT never exists, and
    when another process (a parallel test worker) publishes OUT first, this copy is dropped."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".partial-"))
    try:
        yield tmp
        tmp.rename(out)
    except OSError:
        if not out.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/synth.py CHECKPOINT_FIXTURE_DIR OUT_DIR")
    print(materialize(Path(sys.argv[1]), Path(sys.argv[2])))
