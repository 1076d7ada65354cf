"""`janus convert`: any readable checkpoint -> safetensors in the published key layout.

Sources: the published layouts (`pytorch_model.bin`, sharded `.bin` + index, safetensors) and
the transformers port (`deepseek-community/*`, `model_type: "janus"`, see transformers_layout).
The output is `model.safetensors`, or `model-0000N-of-0000M.safetensors` + an index when the
tensors exceed the shard size, plus the config, tokenizer and processor files. With a quantize
scheme, the linears it quantizes are written as its modules' tensors (checkpoints/quantized.py).

Safety: everything is written into a temporary folder beside DST, verified bit for bit against
a second read of the source, and only then renamed to DST, so an interrupted run leaves DST as
it was. Memory: tensors stream file by file and are written shard by shard (peak ~ one shard).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from janus_cli.checkpoints import transformers_layout as hf
from janus_cli.checkpoints.adapter import Adapter
from janus_cli.checkpoints.merge import merge_tensors
from janus_cli.checkpoints.quantized import linear_parts, record, scheme_to_load, stored_scheme
from janus_cli.checkpoints.read import iter_tensors
from janus_cli.config import JanusConfig, read_json
from janus_cli.errors import CheckpointError, InputError

DEFAULT_SHARD = "5GB"
SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "processor_config.json",
)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


@dataclass(frozen=True)
class ConvertResult:
    folder: Path
    layout: str  # of the source: "published" or "transformers"
    files: tuple[str, ...]  # weight files written
    tensors: int
    bytes: int
    quantize: str  # the scheme DST stores ("none": not quantized)


def parse_size(text: str) -> int:
    """Bytes in '5GB', '500MB', '2GiB' or '1000' (decimal units, as Hugging Face's)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)?\s*", text.upper())
    if not m or float(m[1]) <= 0:
        raise InputError(f"--max-shard-size {text!r}: expected a size like 5GB, 500MB or 2GiB")
    return int(float(m[1]) * _UNITS[m[2] or ""])


def convert(
    src: Path,
    dst: Path,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 5 * 10**9,
    overwrite: bool = False,
    quantize: str = "none",
    status: Callable[[str], None] = lambda s: None,
    adapter: Adapter | None = None,
) -> ConvertResult:
    """Write checkpoint SRC to DST as verified safetensors in the published layout.

    Args:
        dtype: cast floating tensors to it (None keeps the source's).
        quantize: a scheme of models/quantize.py: quantize its linears, from DTYPE's (or the
            source's) values, one tensor at a time; "none" keeps them (and a quantized SRC's).
        adapter: merged into the weights after the cast, before quantizing (`janus merge`;
            checkpoints/merge.py).
        status: called with a short phase description ("writing", "verifying").
    Raises:
        InputError: DST is not empty (without OVERWRITE), or overlaps SRC.
        CheckpointError: SRC is unreadable, or does not match its config.
    """
    src, dst = Path(src), Path(dst)
    _check_destination(src, dst, overwrite)
    config = read_json(src / "config.json")
    layout = "transformers" if hf.is_transformers_config(config) else "published"
    config = hf.to_multi_modality(config) if layout == "transformers" else config
    cfg = JanusConfig.from_dict(config)
    stored = stored_scheme(config)
    scheme = scheme_to_load(quantize, stored, src)
    if stored != "none" and adapter is not None:
        raise InputError(
            f"{src} is quantized as {stored}: an adapter merges into the original's float weights"
        )
    if stored != "none" and dtype is not None:
        raise InputError(
            f"{src} is quantized as {stored}: --dtype would recast its scales; convert the original"
        )
    plan = _plan(cfg, scheme) if stored == "none" and scheme != "none" else {}
    if plan:
        config = record(config, scheme, _source_dtype(src, layout, dtype, plan))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would otherwise become DST's mode
    try:
        status(f"writing {dst}")
        source = functools.partial(_source, src, layout, dtype, scheme, plan, adapter)
        weight_map, total = _write_shards(source(), tmp, max_shard_bytes)
        _check_against_model(cfg, scheme, tmp, weight_map, where=str(src))
        _write_side_files(src, tmp, config, layout, dtype, rewrite=bool(plan))
        status("verifying")
        _verify(source(), tmp, weight_map)
        _replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = tuple(dict.fromkeys(weight_map.values()))
    return ConvertResult(dst, layout, files, len(weight_map), total, scheme)


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    s, d = src.resolve(), dst.resolve()
    if s == d or s in d.parents or d in s.parents:
        raise InputError(f"{dst}: the destination must not overlap the source {src}")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dst}: exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise InputError(f"{dst}: folder is not empty (pass --overwrite to replace it)")


def _source(
    src: Path,
    layout: str,
    dtype: torch.dtype | None,
    scheme: str = "none",
    plan: dict[str, str] | None = None,
    adapter: Adapter | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """SRC's tensors in the published layout, cast to DTYPE, with ADAPTER merged in; the weights
    of the linears PLAN names ({name: part}) become their SCHEME-quantized modules' tensors (a
    bias passes as it is: those modules keep it under the same name)."""
    from torch import nn

    from janus_cli.checkpoints.pages import release
    from janus_cli.models.quantize import quantize_linear

    tensors = hf.published_tensors(src) if layout == "transformers" else iter_tensors(src)
    cast = ((key, t.to(dtype) if dtype is not None and t.is_floating_point() else t) for key, t in tensors)
    for key, t in cast if adapter is None else merge_tensors(cast, adapter):
        name = key.removesuffix(".weight")
        if not plan or name not in plan or name == key:
            yield key, t
            continue
        with torch.device("meta"):
            linear = nn.Linear(t.shape[1], t.shape[0], bias=False)
        linear.weight = nn.Parameter(t, requires_grad=False)
        for k, v in quantize_linear(linear, scheme, plan[name]).state_dict().items():
            yield f"{name}.{k}", v
        release(t)  # its pages, read once, need not stay resident


def _plan(cfg: JanusConfig, scheme: str) -> dict[str, str]:
    from janus_cli.checkpoints.load import build_model

    return linear_parts(build_model(cfg))


def _source_dtype(src: Path, layout: str, dtype: torch.dtype | None, plan: dict[str, str]) -> str:
    """The dtype the PLAN's weights are quantized from: DTYPE, or the source's (its first one)."""
    if dtype is None:
        tensors = hf.published_tensors(src) if layout == "transformers" else iter_tensors(src)
        dtype = next(t.dtype for k, t in tensors if k.removesuffix(".weight") in plan)
    return str(dtype).removeprefix("torch.")


def _write_shards(
    tensors: Iterator[tuple[str, torch.Tensor]], tmp: Path, max_bytes: int
) -> tuple[dict[str, str], int]:
    """Write TENSORS into shards of at most MAX_BYTES (a bigger tensor gets its own shard)."""
    shards: list[list[str]] = []
    shard: dict[str, torch.Tensor] = {}
    storages: set[int] = set()  # safetensors refuses tensors that share storage: copy those
    size = total = 0

    def flush() -> None:
        save_file(shard, str(tmp / f"shard-{len(shards)}.tmp"), metadata={"format": "pt"})
        shards.append(list(shard))
        shard.clear()
        storages.clear()

    seen: set[str] = set()
    for key, t in tensors:
        if key in seen:
            raise CheckpointError(f"tensor {key} appears twice in the source")
        seen.add(key)
        n = t.numel() * t.element_size()
        if shard and size + n > max_bytes:
            flush()
            size = 0
        ptr = t.untyped_storage().data_ptr()
        shard[key] = t.clone() if ptr in storages or not t.is_contiguous() else t
        storages.add(ptr)
        size, total = size + n, total + n
    if shard or not shards:
        flush()
    m = len(shards)
    names = (
        ["model.safetensors"] if m == 1 else [f"model-{i + 1:05d}-of-{m:05d}.safetensors" for i in range(m)]
    )
    weight_map = {}
    mode = 0o666 & ~_umask()  # save_file creates 0600 files
    for i, (name, keys) in enumerate(zip(names, shards, strict=True)):
        os.chmod(tmp / f"shard-{i}.tmp", mode)
        os.replace(tmp / f"shard-{i}.tmp", tmp / name)
        weight_map.update(dict.fromkeys(keys, name))
    if m > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return weight_map, total


def _check_against_model(
    cfg: JanusConfig, scheme: str, tmp: Path, weight_map: dict[str, str], where: str
) -> None:
    """Fail now, not at load time, if the tensors do not fit the model the config describes
    (quantized by SCHEME)."""
    from janus_cli.checkpoints.load import build_model, checkpoint_key_to_param
    from janus_cli.checkpoints.strict import load_strict
    from janus_cli.models.quantize import quantize_model

    shapes: dict[str, torch.Tensor] = {}
    for name in dict.fromkeys(weight_map.values()):
        with safe_open(str(tmp / name), framework="pt") as f:
            for key in f.keys():
                shapes[key] = torch.empty(f.get_slice(key).get_shape(), device="meta")
    model = build_model(cfg)
    if scheme != "none":
        quantize_model(model, scheme)
    load_strict(model, shapes, where=where, rename=checkpoint_key_to_param, device="meta")


def _write_side_files(
    src: Path, tmp: Path, config: dict, layout: str, dtype: torch.dtype | None, rewrite: bool = False
) -> None:
    if dtype is not None:
        name = str(dtype).removeprefix("torch.")
        config = {**config, "torch_dtype": name}
        if "torch_dtype" in config.get("language_config", {}):
            config["language_config"] = {**config["language_config"], "torch_dtype": name}
    if layout == "published" and dtype is None and not rewrite:
        shutil.copy2(src / "config.json", tmp / "config.json")
    else:
        (tmp / "config.json").write_text(
            json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    for name in SIDE_FILES:
        if not (src / name).is_file():
            continue
        if layout == "transformers" and name == "preprocessor_config.json":
            pre = hf.to_vlm_preprocessor(read_json(src / name))
            (tmp / name).write_text(json.dumps(pre, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            shutil.copy2(src / name, tmp / name)


def _verify(tensors: Iterator[tuple[str, torch.Tensor]], tmp: Path, weight_map: dict[str, str]) -> None:
    """Re-open every written shard and compare each tensor bit for bit with a fresh source read."""
    checked = 0
    with contextlib.ExitStack() as stack:
        files = {
            n: stack.enter_context(safe_open(str(tmp / n), framework="pt")) for n in set(weight_map.values())
        }
        for key, expected in tensors:
            got = files[weight_map[key]].get_tensor(key) if key in weight_map else None
            if (
                got is None
                or got.dtype != expected.dtype
                or got.shape != expected.shape
                or not _same_bits(got, expected)
            ):
                raise CheckpointError(f"verification failed: {key} differs between the source and the output")
            checked += 1
    if checked != len(weight_map):
        raise CheckpointError(
            f"verification failed: the source yielded {checked} tensors, {len(weight_map)} were written"
        )


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(
        a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(tmp: Path, dst: Path) -> None:
    """Move the finished TMP to DST; an existing DST is moved aside first and deleted last."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
    tmp.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
