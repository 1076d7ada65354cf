"""Read tensors from a checkpoint folder in any published layout, without executing pickles.

Layouts: `model.safetensors` (Janus-1.3B, JanusFlow), `pytorch_model.bin` (Janus-Pro-1B),
`pytorch_model-0000N-of-0000M.bin` + `pytorch_model.bin.index.json` (Janus-Pro-7B), sharded
safetensors + `model.safetensors.index.json` (what `janus convert` writes for big models), and
diffusers' `diffusion_pytorch_model.safetensors` (SDXL-VAE).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from janus_cli.errors import CheckpointError

# In order of preference when a folder holds several (hub repos sometimes ship both).
SINGLE_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def weight_files(folder: Path) -> list[Path]:
    """The weight files of FOLDER, shards in index order. Raises CheckpointError if none."""
    folder = Path(folder)
    for name in SINGLE_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_FILES:
        if (folder / name).is_file():
            return _shards(folder / name)
    raise CheckpointError(
        f"{folder}: no weights found (expected one of {', '.join(SINGLE_FILES + INDEX_FILES)})"
    )


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a valid weight index ({e})") from None
    files = [index.parent / n for n in names]
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{index}: names shard {f.name}, which is missing")
    return files


def iter_tensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (key, tensor) for every tensor of the checkpoint, one file at a time.

    Pickled `.bin` files are opened with `weights_only=True` (no code runs) and memory-mapped;
    safetensors are memory-mapped by design.
    """
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            yield from _iter_safetensors(path)
        else:
            yield from _load_pickle(path).items()


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, tensor in iter_tensors(folder):
        if key in state:
            raise CheckpointError(f"{folder}: tensor {key} appears in two shards")
        state[key] = tensor
    return state


def _iter_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                yield key, f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({_first_line(e)})") from None


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the pickle holds objects other than tensors "
            f"(nothing was executed{_blocked_global(e)}); do not load this file with other tools"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated .bin file ({_first_line(e)})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return obj


def _blocked_global(e: BaseException) -> str:
    """The global torch refused, e.g. `posix.system` (never PyTorch's advice to unpickle it)."""
    found = re.search(r"GLOBAL (\S+)", str(e))
    return f"; it calls {found.group(1)}" if found else ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
