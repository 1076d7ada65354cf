"""Quantized checkpoints: the scheme a checkpoint folder stores, and which one a load runs.

`janus convert --quantize SCHEME` writes the quantized modules' tensors (e.g. an int8 `weight`
and a `scale` per linear) under the linear's name, and records in config.json

    "quantization": {"scheme": "int8", "dtype": "bfloat16"}

(dtype: what the weights were quantized from; loading in that dtype gives exactly what
quantizing the original checkpoint while loading gives). Loading such a folder runs its
scheme: `--quantize none` (the default) means "as stored", since dequantizing back to bf16 would
only cost memory and time without restoring what rounding lost; asking for another scheme is an
error (re-quantizing quantized weights would stack two roundings).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from janus_cli.errors import InputError

KEY = "quantization"


def stored_scheme(config: dict) -> str:
    """The scheme a checkpoint's config.json records; "none" for an unquantized checkpoint."""
    q = config.get(KEY)
    return str(q.get("scheme", "none")) if isinstance(q, dict) else "none"


def scheme_to_load(asked: str, stored: str, where: Path | str) -> str:
    """The scheme a load of a checkpoint storing STORED runs when ASKED (--quantize) is given."""
    if stored == "none" or asked in ("none", stored):
        return stored if stored != "none" else asked
    raise InputError(
        f"{where} is quantized as {stored}: load it with --quantize {stored} (or leave --quantize out), "
        f"or quantize the original checkpoint with --quantize {asked}"
    )


def record(config: dict, scheme: str, dtype: str) -> dict:
    """CONFIG with the quantization SCHEME (from weights in DTYPE) recorded."""
    return {**config, KEY: {"scheme": scheme, "dtype": dtype}}


def linear_parts(model: nn.Module) -> dict[str, str]:
    """{dotted name: part (models/quantize.py's PARTS)} of each nn.Linear of MODEL a scheme
    quantizes."""
    from janus_cli.models.quantize import part_of

    parts = ((name, part_of(name)) for name, m in model.named_modules() if type(m) is nn.Linear)
    return {name: part for name, part in parts if part is not None}
